"""Settings of a power study: the ``[power]`` table.

A power study (``study power``) runs, for every condition and replicate, the tests of
``H0: beta_t = null_t`` for each tested term ``t`` that every engine of the study
offers, on the replicate's data and on its *null twin*: the same X, random effects,
residuals and missing rows with the tested effects set to their null values (the
condition's own replicate stream; only ``X beta`` differs).  The share of replicates
rejecting is the power on the data and the type I error on the twin, read side by
side.

Which tests an engine runs: those it declares (:class:`models.base.Testing`, e.g.
REML's z, t, Satterthwaite, Kenward-Roger and likelihood-ratio tests; the Bayesian
decision rules), else ``wald``: ``(estimate - null) / SE`` against the engine's own
reference (its ``df``: a t distribution, or the normal when infinite), which is the
engine's interval at level ``1 - alpha`` excluding the null.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any

from models.validate import OptionError, boolean, fail, number

if TYPE_CHECKING:
    from study.design.study_config import StudyConfig

#: the configuration's table of these settings (``[power]``)
TABLE = "power"
#: the test every engine without tests of its own gets
WALD = "wald"


@dataclass(frozen=True)
class PowerSettings:
    """The ``[power]`` table.

    Parameters
    ----------
    terms : list of str
        The fixed effects tested, each on its own (default: every fixed effect but the
        intercept).
    null : float or table
        The null value of every tested term, or a table by term (default 0).
    alpha : float
        The tests' level; the engines' intervals are at ``1 - alpha`` (default:
        ``1 - level``).  Giving ``alpha`` sets the study's ``level``.
    target : float
        The power a sample-size search looks for and the figures mark (not hashed:
        it changes no replicate's result).
    tests : list of str
        Only these tests (by method name, e.g. ``["kenward-roger"]``); default: every
        test of every engine.
    twins : bool
        Fit the null twins (default).  A sample-size search turns them off in its
        rounds, which need the power only (its confirmation run fits them): the
        twin's entries are then NaN, "not run".
    """

    terms: tuple[str, ...] = ()
    null: float | Mapping[str, float] = 0.0
    alpha: float | None = None
    target: float = field(default=0.8, metadata={"hashed": False})
    tests: tuple[str, ...] = ()
    twins: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "twins", boolean("power.twins", self.twins))
        for key in ("terms", "tests"):
            value = getattr(self, key)
            if isinstance(value, str) or not isinstance(value, list | tuple):
                raise fail(f"power.{key}", value, "must be a list of names")
            if any(not isinstance(v, str) or not v for v in value):
                raise fail(f"power.{key}", list(value), "must be a list of names")
            if len(set(value)) != len(value):
                raise fail(f"power.{key}", list(value), "names must be distinct")
            object.__setattr__(self, key, tuple(value))
        if self.alpha is not None:
            object.__setattr__(self, "alpha", number("power.alpha", self.alpha, low=0.0, high=1.0))
        object.__setattr__(self, "target", number("power.target", self.target, low=0.0, high=1.0))
        null = self.null
        if isinstance(null, Mapping):
            object.__setattr__(
                self, "null", {str(k): number(f"power.null.{k}", v) for k, v in null.items()}
            )
        else:
            object.__setattr__(self, "null", number("power.null", null))

    def table(self, hashed: bool = False) -> dict[str, Any]:
        """The settings as a TOML table (``hashed``: only those in the hash)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            if hashed and not f.metadata.get("hashed", True):
                continue
            value = getattr(self, f.name)
            if value is None:
                continue
            out[f.name] = list(value) if isinstance(value, tuple) else value
        if isinstance(out.get("null"), Mapping):
            out["null"] = dict(out["null"])
        return out

    def null_of(self, term: str) -> float:
        """The null value of tested term ``term``."""
        null = self.null
        return float(null.get(term, 0.0)) if isinstance(null, Mapping) else float(null)

    @property
    def nulls(self) -> tuple[float, ...]:
        """The null value of each tested term, in the order of :attr:`terms`."""
        return tuple(self.null_of(t) for t in self.terms)

    def checked(self, config: StudyConfig) -> PowerSettings:
        """These settings for ``config``: the tested terms fixed effects of its model,
        ``alpha`` agreeing with ``level``, and every named test run by some engine."""
        fixed = list(config.design.structure.fixed)
        model_terms = config.terms()[0]
        terms = self.terms or tuple(t for t in fixed[1:]) or tuple(fixed)
        for t in terms:
            if t in fixed:
                continue
            if t in model_terms:
                raise fail(
                    "power.terms",
                    list(terms),
                    f"{t!r} is a variance parameter, which has no fixed effect for a null "
                    f"twin to set; test one of the fixed effects {', '.join(fixed)}",
                )
            raise fail(
                "power.terms",
                list(terms),
                f"{t!r} is not a term of the model; choose from {', '.join(fixed)}",
            )
        if isinstance(self.null, Mapping):
            extra = sorted(set(self.null) - set(terms))
            if extra:
                raise fail(
                    "power.null",
                    dict(self.null),
                    f"names {', '.join(extra)}, not a tested term ({', '.join(terms)})",
                )
        level_alpha = round(1.0 - config.level, 12)
        alpha = level_alpha if self.alpha is None else self.alpha
        if not math.isclose(alpha, level_alpha, rel_tol=0, abs_tol=1e-12):
            raise fail(
                "power.alpha",
                self.alpha,
                f"disagrees with level = {config.level:g} (the engines' intervals are at "
                f"1 - alpha): drop level, or set it to {1 - alpha:g}",
            )
        out = replace(self, terms=terms, alpha=alpha)
        offered = {m for e in config.engines for m in methods_of(config, e, ())}
        unknown = [t for t in self.tests if t not in offered]
        if unknown:
            raise fail(
                "power.tests",
                list(self.tests),
                f"no engine of the study runs {', '.join(unknown)}; choose from "
                f"{', '.join(sorted(offered))}",
            )
        if not any(methods_of(config, e, self.tests) for e in config.engines):
            raise fail("power.tests", list(self.tests), "leave no test to run")
        return out

    @property
    def level_alpha(self) -> float:
        """``alpha`` (checked settings always have one)."""
        assert self.alpha is not None
        return float(self.alpha)


def methods_of(config: StudyConfig, engine: str, only: Sequence[str]) -> tuple[str, ...]:
    """The tests engine label ``engine`` runs in ``config``: those it declares, else
    :data:`WALD`; restricted to ``only`` when given."""
    offered = tuple(config.registry.tests_of(engine)) or (WALD,)
    return tuple(m for m in offered if not only or m in only)


def power_settings(config: StudyConfig) -> PowerSettings | None:
    """The ``[power]`` settings of ``config`` (``None``: not a power study)."""
    settings = config.kind_settings.get(TABLE)
    return settings if isinstance(settings, PowerSettings) else None


def tests_of(config: StudyConfig) -> list[tuple[str, str]]:
    """Every (engine, method) test a power study runs, in the engines' order."""
    settings = power_settings(config)
    assert settings is not None
    return [(e, m) for e in config.engines for m in methods_of(config, e, settings.tests)]


def test_label(engine: str, method: str) -> str:
    """The label of a test in the results: ``reml/kenward-roger``."""
    return f"{engine}/{method}"


def level_from_alpha(raw: dict[str, Any]) -> None:
    """Set the study's ``level`` from ``[power] alpha`` when ``level`` is not given
    (the engines' intervals are then at ``1 - alpha``), in the raw TOML table."""
    table = raw.get(TABLE)
    if isinstance(table, Mapping) and "alpha" in table and "level" not in raw:
        alpha = table["alpha"]
        try:
            value = number("power.alpha", alpha, low=0.0, high=1.0)
        except OptionError:
            return  # PowerSettings says what is wrong with it
        raw["level"] = 1.0 - value


#: the design keys a sample-size search may vary: whole numbers of the design
SEARCH_KEYS = ("groups", "group_size", "repeats")


def search_step(design: Any, factor: str) -> int:
    """The step between the values of ``factor`` a search may try, so that the design
    keeps its constraints: with a ``balanced`` predictor of share ``s`` at the level
    the factor counts (groups: a group-level one; group_size: a row-level one), every
    value must make ``s x value`` whole (share 0.5: an even number of clusters)."""
    from fractions import Fraction

    level = {"groups": "group", "group_size": "row"}.get(factor)
    step = 1
    for v in design.variables:
        if v.distribution == "balanced" and v.level == level:
            denominator = Fraction(float(v.p["share"])).limit_denominator(1000).denominator
            step = step * denominator // math.gcd(step, denominator)
    return step
