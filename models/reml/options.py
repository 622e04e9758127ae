"""Options of the REML/ML engine (validated once, frozen)."""

from __future__ import annotations

from dataclasses import dataclass

from models.validate import OptionTypeError, choice, integer, number

METHODS = ("reml", "ml")
#: fixed-effect intervals: normal, t with K - p df, Satterthwaite df, Kenward-Roger SE and df
CI_KINDS = ("wald", "t", "satterthwaite", "kenward-roger")
#: variance-parameter intervals: Wald on the log-SD / atanh-cor scale, profile likelihood
RAN_PARS_CI_KINDS = ("wald", "profile", "none")
OPTIMIZERS = ("lbfgs", "bfgs", "cg", "powell")
#: Tolerances tighter than statsmodels' defaults, per optimizer (the objective is
#: -loglik / N).  statsmodels' MixedLM.fit does not pass pgtol/factr, so lbfgs keeps
#: scipy's defaults (the Newton polish finishes the job).
TOLERANCES: dict[str, dict[str, float]] = {
    "bfgs": {"gtol": 1e-7},
    "cg": {"gtol": 1e-6},
    "powell": {"ftol": 1e-10},
}
_CI_NAMES = {
    "wald": "Wald",
    "t": "t (df = K - p)",
    "satterthwaite": "Satterthwaite t",
    "kenward-roger": "Kenward-Roger",
}


@dataclass(frozen=True)
class RemlOptions:
    """Configuration of :class:`~models.reml.engine.RemlEngine`.

    Parameters
    ----------
    method : {"reml", "ml"}
        Restricted or full maximum likelihood.
    ci : {"wald", "t", "satterthwaite", "kenward-roger"}
        Fixed-effect intervals: normal quantile; t with ``K - p`` df (``K`` groups,
        ``p`` predictors besides the intercept); t with Satterthwaite df (lmerTest); or
        the Kenward-Roger adjusted SE with its df (pbkrtest).  The SE stored is the one
        the interval uses.
    ran_pars_ci : {"wald", "profile", "none"}
        Intervals for the SDs, correlations and residual SD: Wald on the log-SD /
        atanh-correlation scale from the observed information (with delta-method SEs),
        profile likelihood as ``lme4::confint(method = "profile")`` (which profiles the
        ML deviance, also for REML fits; about 0.1-0.3 s per fit), or none.
    level : float
        Interval coverage, in (0, 1).
    optimizers : tuple of str
        statsmodels optimizers tried in turn until one converges.
    maxiter : int
        Iteration limit per optimizer.
    """

    method: str = "reml"
    ci: str = "wald"
    ran_pars_ci: str = "wald"
    level: float = 0.95
    optimizers: tuple[str, ...] = ("lbfgs", "bfgs", "cg", "powell")
    maxiter: int = 500

    def __post_init__(self) -> None:
        choice("method", self.method, METHODS)
        choice("ci", self.ci, CI_KINDS)
        choice("ran_pars_ci", self.ran_pars_ci, RAN_PARS_CI_KINDS)
        number("level", self.level, low=0.0, high=1.0)
        opts = self.optimizers
        if isinstance(opts, str) or not isinstance(opts, tuple | list) or not opts:
            raise OptionTypeError(
                "optimizers", opts, f"must be a non-empty list drawn from {', '.join(OPTIMIZERS)}"
            )
        for i, name in enumerate(opts):
            choice(f"optimizers[{i}]", name, OPTIMIZERS)
        object.__setattr__(self, "optimizers", tuple(opts))
        integer("maxiter", self.maxiter, low=1)

    def describe(self) -> str:
        """Short description, e.g. ``"REML, 95% Wald intervals"``."""
        text = f"{self.method.upper()}, {100 * self.level:g}% {_CI_NAMES[self.ci]} intervals"
        if self.ran_pars_ci != "wald":
            text += f", {self.ran_pars_ci} intervals for variance parameters"
        return text
