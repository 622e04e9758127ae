"""Several grouping factors against lme4 1.1-31, lmerTest 3.1-3 and pbkrtest 0.5.2.

References: ``tests/data/lme4_crossed.toml`` (copied from the project's shared data: three
formulas on ``crossed.csv``, 24 subjects x 16 items) and ``lme4_crossed_extra.toml`` (made
by ``tests/data/make_lme4_crossed_extra.R``: nested designs on ``nested.csv``, an
uncorrelated crossed model, an ML fit and a likelihood-ratio test).  The issue asks for
1e-4; the fits agree to ~1e-6 (lme4's bobyqa stops within that of the optimum, which this
engine finds exactly), so the tolerances below are 1e-5 (estimates, SEs, SDs, criterion)
and 1e-5 relative (df).
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from models.crossed import CrossedData
from models.formula import model_data
from models.reml import RemlEngine, RemlOptions
from models.reml.crossed import CrossedCriterion

DATA_DIR = Path(__file__).resolve().parents[1] / "data"

REF = tomllib.loads((DATA_DIR / "lme4_crossed.toml").read_text())
EXTRA = tomllib.loads((DATA_DIR / "lme4_crossed_extra.toml").read_text())
FRAMES = {
    "crossed": pd.read_csv(DATA_DIR / "crossed.csv"),
    "nested": pd.read_csv(DATA_DIR / "nested.csv"),
}
CASES = [(k, "crossed", REF[k]) for k in ("max", "int", "mixed")] + [
    (k, "nested" if k.startswith("nested") else "crossed", EXTRA[k])
    for k in ("nested", "nested_slope", "uncorrelated")
]
TOL = 1e-5


def _fit(frame: str, formula: str, **options):
    data, dropped = model_data(FRAMES[frame], formula)
    assert isinstance(data, CrossedData) and dropped == 0
    return RemlEngine(RemlOptions(**options)).fit(data), data


def _value(fit, term: str) -> tuple[float, float, float]:
    i = fit.terms.index(term)
    return fit.estimate[i], fit.std_error[i], fit.df[i]


@pytest.mark.parametrize(("key", "frame", "ref"), CASES, ids=[c[0] for c in CASES])
def test_estimates_and_satterthwaite_match_lmertest(key, frame, ref):
    fit, _ = _fit(frame, ref["formula"], ci="satterthwaite")
    assert fit.converged and fit.message == ""
    assert fit.singular is bool(ref["singular"])
    assert fit.criterion == pytest.approx(ref["criterion"], abs=TOL)
    for term, row in ref["fixed"].items():
        est, se, df = _value(fit, term)
        assert est == pytest.approx(row["estimate"], abs=TOL), term
        assert se == pytest.approx(row["se"], abs=TOL), term
        assert df == pytest.approx(row["df_satterthwaite"], rel=TOL), term
    for term, sd in ref["ran_pars"].items():
        assert _value(fit, term)[0] == pytest.approx(sd, abs=TOL), term
    assert set(fit.terms) == set(ref["fixed"]) | set(ref["ran_pars"])


@pytest.mark.parametrize(("key", "frame", "ref"), CASES, ids=[c[0] for c in CASES])
def test_kenward_roger_matches_pbkrtest(key, frame, ref):
    fit, _ = _fit(frame, ref["formula"], ci="kenward-roger")
    for term, row in ref["fixed"].items():
        _, se, df = _value(fit, term)
        assert se == pytest.approx(row["se_kr"], abs=TOL), term
        assert df == pytest.approx(row["df_kr"], rel=TOL), term


def test_term_names_follow_broom_mixed_with_the_group():
    fit, data = _fit("crossed", REF["max"]["formula"])
    assert fit.terms == [
        "(Intercept)",
        "cond",
        "sd__(Intercept)|subj",
        "sd__cond|subj",
        "cor__(Intercept).cond|subj",
        "sd__(Intercept)|item",
        "sd__cond|item",
        "cor__(Intercept).cond|item",
        "sd__Observation",
    ]
    assert data.group_levels == {"subj": 24, "item": 16}
    assert fit.ngroups == 16  # the fewest levels: the K of the t reference


def test_nested_slash_expands_as_lme4():
    """``(1 | school/class)`` is lme4's ``(1 | school) + (1 | class:school)``: the same fit
    as writing the interaction out (``nested_slope`` writes ``school:class``)."""
    _, data = _fit("nested", "y ~ x + (1 | school/class)")
    assert data.structure.groups == ("school", "class:school")
    assert data.group_levels == {"school": 12, "class:school": 36}
    a, _ = _fit("nested", "y ~ x + (1 | school/class)")
    b, _ = _fit("nested", "y ~ x + (1 | school) + (1 | class:school)")
    np.testing.assert_allclose(a.estimate, b.estimate, rtol=1e-10)


def test_ml_fit_matches_lme4():
    """The ML deviance is flat along the item correlation: lme4's bobyqa stops 8e-8 above
    the optimum, where the item SD and correlation are 2e-5 and 9e-5 from it.  So the
    fit's deviance must be no higher than the deviance at lme4's estimates, and the
    variance parameters agree within 2e-4 (the fixed effects and the deviance to 1e-5)."""
    ref = EXTRA["max_ml"]
    fit, data = _fit("crossed", ref["formula"], method="ml")
    assert fit.converged
    assert fit.criterion == pytest.approx(ref["criterion"], abs=TOL)
    for term, row in ref["fixed"].items():
        est, se, _ = _value(fit, term)
        assert est == pytest.approx(row["estimate"], abs=TOL)
        assert se == pytest.approx(row["se"], abs=TOL)
    for term, sd in ref["ran_pars"].items():
        assert _value(fit, term)[0] == pytest.approx(sd, abs=2e-4), term
    crit = CrossedCriterion(data, reml=False)
    values = np.array([ref["ran_pars"][t] for t in data.structure.terms[data.q :]])
    _, bars, sigma = data.structure.split(np.concatenate([np.zeros(data.q), values]))
    lam = np.zeros((4, 4))
    for f, (sds, corr) in enumerate(bars):
        D = sds[:, None] * corr * sds[None, :] / sigma**2
        lam[2 * f : 2 * f + 2, 2 * f : 2 * f + 2] = np.linalg.cholesky(D)
    assert fit.criterion <= crit.value_theta(crit.theta_of(lam)) + 1e-9


def test_likelihood_ratio_test_matches_anova():
    ref = EXTRA["lrt"]
    data, _ = model_data(FRAMES["crossed"], ref["formula"])
    _, tests = RemlEngine().fit_tests(
        data, terms=[ref["term"]], null=[0.0], tests=["lrt", "satterthwaite", "kenward-roger"]
    )
    lrt = tests["lrt"]
    assert lrt.statistic[0] == pytest.approx(ref["chisq"], abs=1e-5)
    assert lrt.p_value[0] == pytest.approx(ref["p_value"], rel=1e-4)
    row = REF["max"]["fixed"]["cond"]
    assert tests["satterthwaite"].df[0] == pytest.approx(row["df_satterthwaite"], rel=TOL)
    assert tests["kenward-roger"].df[0] == pytest.approx(row["df_kr"], rel=TOL)


def test_profile_intervals_are_refused_in_the_message():
    fit, _ = _fit("crossed", REF["int"]["formula"], ran_pars_ci="profile")
    assert fit.converged
    assert "profile intervals" in fit.message
    assert np.isnan(fit.ci_lower[2:]).all()
    assert np.isfinite(fit.ci_lower[:2]).all()
