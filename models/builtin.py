"""The registration records of the built-in engines (light: imports no engine).

``pyproject.toml`` registers each of them in the entry-point group
``lmm_study.engines`` (``reml = "models.builtin:REML"``), exactly as a third-party
package registers its own engines; :mod:`models.registry` reads them from there.
"""

from __future__ import annotations

from models.base import Capability
from models.spec import EngineSpec

__all__ = ["BAYES", "BAYES_RULES", "GEE", "OLS", "REML", "REML_TESTS", "SPECS"]

#: the tests of H0: beta_j = null_j that the REML engine offers (RemlEngine.fit_tests):
#: Wald z, t with K - p df, Satterthwaite t, Kenward-Roger t, ML likelihood ratio
REML_TESTS: tuple[str, ...] = ("z", "t", "satterthwaite", "kenward-roger", "lrt")
#: the Bayesian engine's decision rules (models/bayes/decisions.py): the credible
#: interval at 1 - alpha excludes the null; P(sign) >= 1 - alpha / 2
BAYES_RULES: tuple[str, ...] = ("interval", "sign")
#: REML/ML (statsmodels MixedLM, polished to the exact optimum).  Version 2: the Newton
#: polish to the exact optimum and the new inference (models/reml/).
REML = EngineSpec(
    name="reml",
    engine="models.reml.engine:RemlEngine",
    options="models.reml.options:RemlOptions",
    version=2,
    capabilities=frozenset({Capability.TESTS, Capability.CROSSED}),
    summary="REML or ML fit of the mixed model (statsmodels MixedLM, exact optimum)",
    tests=REML_TESTS,
)
#: PyMC model sampled by nutpie.  Version 2: the q = 2 likelihood Op
#: (models/bayes/kernel.py); 3: chains start in a data-scaled region and stuck chains
#: are rerun and recorded (models/bayes/start.py).
BAYES = EngineSpec(
    name="bayes",
    engine="models.bayes.engine:BayesEngine",
    options="models.bayes.options:BayesOptions",
    version=3,
    capabilities=frozenset(
        {
            Capability.COMPILE,
            Capability.STRUCTURE_CHECK,
            Capability.THREADS,
            Capability.PRIOR,
            Capability.TESTS,
            Capability.CROSSED,
        }
    ),
    summary="Bayesian mixed model: PyMC, random effects integrated out, sampled by nutpie",
    data_options="models.bayes.scaled_priors:for_data",
    tests=BAYES_RULES,
)
#: GEE, exchangeable working correlation, sandwich or Mancl-DeRouen covariance.
GEE = EngineSpec(
    name="gee",
    engine="models.robust.gee:GeeEngine",
    options="models.robust.options:GeeOptions",
    version=1,
    summary="GEE (Gaussian, exchangeable), robust or bias-reduced (Mancl-DeRouen) SEs",
)
#: OLS with cluster-robust CR1 standard errors and t(K - 1) intervals.
OLS = EngineSpec(
    name="ols",
    engine="models.robust.ols:OlsEngine",
    options="models.robust.options:OlsOptions",
    version=1,
    summary="pooled OLS with cluster-robust (CR1) SEs and t with K - 1 df",
)
#: the built-in engines, in their canonical order
SPECS: tuple[EngineSpec, ...] = (REML, BAYES, GEE, OLS)
