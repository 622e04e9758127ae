"""REML fits of lme4-style formulas against lme4 itself.

External reference values: ``tests/data/lme4_formulas.toml`` (lme4 1.1-31, R 4.2.2,
REML, bobyqa; provenance in ``tests/data/README.md``): a random intercept only, an
uncorrelated intercept and slope (``||``), and an extra fixed effect without a random
slope.  The data are built by :func:`models.formula.model_data` from the formula, fitted
by the REML engine with its defaults (Wald intervals), and every estimate, fixed-effect
SE and the REML criterion must agree to 1e-4 relative.
"""

from __future__ import annotations

import tomllib

import numpy as np
import pandas as pd
import pytest
from helpers import DATA

from models.formula import model_data, parse
from models.reml.engine import RemlEngine
from models.structure import FIXED

with open(DATA / "lme4_formulas.toml", "rb") as _fh:
    REFERENCE: dict[str, dict] = tomllib.load(_fh)

#: which CSV each reference fit used (the TOML's section name up to its number)
FILES = {"sleepstudy": "sleepstudy.csv", "sleepstudy_dose": "sleepstudy_dose.csv"}
RTOL = 1e-4


def _frame(case: str) -> pd.DataFrame:
    return pd.read_csv(DATA / FILES[case.rsplit("_", 1)[0]])


@pytest.fixture(scope="module", params=sorted(REFERENCE))
def fitted(request):
    case = request.param
    ref = REFERENCE[case]
    frame = _frame(case)
    formula = parse(ref["formula"])
    assert set(formula.columns) <= set(frame.columns), (case, formula.columns)
    data, dropped = model_data(frame, formula)
    assert dropped == 0 and data.n_obs == len(frame)
    return case, ref, data, RemlEngine().fit(data)


def test_every_reference_case_has_a_data_file():
    assert len(REFERENCE) >= 3
    for case, ref in REFERENCE.items():
        assert "formula" in ref and "reml_criterion" in ref, case
        assert (DATA / FILES[case.rsplit("_", 1)[0]]).is_file(), case


def test_terms_are_lme4s(fitted):
    case, ref, data, fit = fitted
    expected = [k for k in ref if k not in ("formula", "reml_criterion")]
    assert fit.terms == data.structure.terms
    assert sorted(fit.terms) == sorted(expected), case


def test_converged(fitted):
    case, _, _, fit = fitted
    assert fit.converged, (case, fit.message)
    assert not fit.singular


def test_fixed_effects_and_standard_errors(fitted):
    case, ref, _, fit = fitted
    for j, (term, effect) in enumerate(zip(fit.terms, fit.effects, strict=True)):
        if effect != FIXED:
            continue
        est, se = ref[term]
        assert fit.estimate[j] == pytest.approx(est, rel=RTOL), (case, term)
        assert fit.std_error[j] == pytest.approx(se, rel=RTOL), (case, term)


def test_standard_deviations_and_correlations(fitted):
    case, ref, _, fit = fitted
    for j, (term, effect) in enumerate(zip(fit.terms, fit.effects, strict=True)):
        if effect == FIXED:
            continue
        assert fit.estimate[j] == pytest.approx(ref[term], rel=RTOL), (case, term)


def test_reml_criterion(fitted):
    case, ref, _, fit = fitted
    assert np.isfinite(fit.criterion)
    assert fit.criterion == pytest.approx(ref["reml_criterion"], rel=RTOL), case
