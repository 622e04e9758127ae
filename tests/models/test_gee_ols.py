"""The gee and ols engines equal statsmodels' own fits on sleepstudy (Reaction ~ Days,
clusters Subject: K = 18, N = 180); intervals and df as documented; failures recorded.

Tolerances: ours and the reference run the same statsmodels code on the same numbers
(the reference through the formula interface), so they agree to rounding (1e-10
relative); the hand-written CR1 sandwich differs only by floating-point summation order.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf
from scipy import stats
from statsmodels.genmod import families
from statsmodels.genmod.cov_struct import Exchangeable

from models.data import LMMData
from models.registry import build_engine
from models.robust.gee import GeeEngine
from models.robust.options import GeeOptions, OlsOptions
from models.structure import Structure

DATA = Path(__file__).resolve().parents[1] / "data" / "sleepstudy.csv"
RTOL = 1e-10
K, P = 18, 1  # subjects; predictors besides the intercept


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return pd.read_csv(DATA)


@pytest.fixture(scope="module")
def data(frame) -> LMMData:
    return LMMData.from_frame(frame, y="Reaction", x=["Days"], group="Subject")


def _gee_reference(frame, cov_type):
    model = smf.gee(
        "Reaction ~ Days",
        groups="Subject",
        data=frame,
        family=families.Gaussian(),
        cov_struct=Exchangeable(),
    )
    return model.fit(cov_type=cov_type)


@pytest.mark.parametrize("cov_type", ["robust", "bias_reduced"])
@pytest.mark.parametrize("reference", ["normal", "t"])
def test_gee_equals_statsmodels(frame, data, cov_type, reference):
    ref = _gee_reference(frame, cov_type)
    level = 0.9
    engine = build_engine("gee", {"cov_type": cov_type, "reference": reference}, level=level)
    fit = engine.fit(data, seed=1)
    assert fit.converged and fit.message == ""
    assert fit.terms[:2] == ["(Intercept)", "Days"]
    np.testing.assert_allclose(fit.estimate[:2], ref.params.to_numpy(), rtol=RTOL)
    np.testing.assert_allclose(fit.std_error[:2], ref.bse.to_numpy(), rtol=RTOL)
    if reference == "normal":
        assert np.all(fit.df[:2] == np.inf)
        ci = ref.conf_int(alpha=1 - level).to_numpy()  # statsmodels' GEE intervals: normal
        np.testing.assert_allclose(fit.ci_lower[:2], ci[:, 0], rtol=RTOL)
        np.testing.assert_allclose(fit.ci_upper[:2], ci[:, 1], rtol=RTOL)
    else:
        assert np.all(fit.df[:2] == K - P)
        half = stats.t.ppf(0.95, K - P) * ref.bse.to_numpy()
        np.testing.assert_allclose(fit.ci_upper[:2], ref.params.to_numpy() + half, rtol=RTOL)
    # fixed effects only: every variance parameter NaN, as are likelihood statistics
    assert np.isnan(fit.estimate[2:]).all() and np.isnan(fit.ci_lower[2:]).all()
    assert np.isnan(fit.loglik) and np.isnan(fit.rhat).all()
    assert (fit.nobs, fit.ngroups, fit.optimizer) == (180.0, 18.0, "gee")


def test_bias_reduced_differs_from_robust(data):
    """The option reaches statsmodels: Mancl-DeRouen inflates the sandwich (it corrects
    its downward bias with few clusters)."""
    robust = build_engine("gee").fit(data)
    reduced = build_engine("gee", GeeOptions(cov_type="bias_reduced")).fit(data)
    assert np.all(reduced.std_error[:2] > robust.std_error[:2])
    np.testing.assert_array_equal(reduced.estimate, robust.estimate)


def test_ols_equals_statsmodels_cluster_cr1_with_k_minus_1_df(frame, data):
    groups = pd.factorize(frame["Subject"])[0]
    ref = smf.ols("Reaction ~ Days", data=frame).fit(
        cov_type="cluster", cov_kwds={"groups": groups}, use_t=True
    )
    fit = build_engine("ols").fit(data)
    assert fit.converged and fit.message == ""
    np.testing.assert_allclose(fit.estimate[:2], ref.params.to_numpy(), rtol=RTOL)
    np.testing.assert_allclose(fit.std_error[:2], ref.bse.to_numpy(), rtol=RTOL)
    assert np.all(fit.df[:2] == K - 1)
    ci = ref.conf_int(alpha=0.05).to_numpy()  # use_t: statsmodels' t with G - 1 df
    np.testing.assert_allclose(fit.ci_lower[:2], ci[:, 0], rtol=RTOL)
    np.testing.assert_allclose(fit.ci_upper[:2], ci[:, 1], rtol=RTOL)
    tidy = fit.tidy()
    np.testing.assert_allclose(tidy["p_value"][:2], ref.pvalues.to_numpy(), rtol=1e-8)
    # CR1 by hand: G/(G-1) (N-1)/(N-p) (X'X)^-1 sum_g X_g'e_g e_g'X_g (X'X)^-1
    X, y = data.X, data.y
    n, p = X.shape
    bread = np.linalg.inv(X.T @ X)
    e = y - X @ fit.estimate[:2]
    scores = np.array([X[data.group == g].T @ e[data.group == g] for g in range(K)])
    cr1 = K / (K - 1) * (n - 1) / (n - p) * bread @ (scores.T @ scores) @ bread
    np.testing.assert_allclose(fit.std_error[:2], np.sqrt(np.diag(cr1)), rtol=1e-9)
    # pooled normal log-likelihood; AIC/BIC count the two coefficients and sigma
    assert fit.loglik == pytest.approx(ref.llf, rel=RTOL)
    glance = fit.glance().iloc[0]
    assert glance["AIC"] == pytest.approx(-2 * ref.llf + 2 * 3, rel=RTOL)
    assert glance["BIC"] == pytest.approx(-2 * ref.llf + np.log(180) * 3, rel=RTOL)
    assert np.isnan(glance["sigma"])


def test_ols_normal_reference(data):
    t_fit = build_engine("ols").fit(data)
    z_fit = build_engine("ols", OlsOptions(reference="normal")).fit(data)
    assert np.all(z_fit.df[:2] == np.inf)
    z = stats.norm.ppf(0.975)
    np.testing.assert_allclose(
        z_fit.ci_upper[:2], t_fit.estimate[:2] + z * t_fit.std_error[:2], rtol=RTOL
    )


def test_other_structures_keep_their_terms(data):
    """The result is on the data's structure's terms (here a random intercept only)."""
    ri = data.with_structure(Structure(("(Intercept)", "Days"), ("(Intercept)",)))
    fit = build_engine("ols").fit(ri)
    assert fit.terms == ["(Intercept)", "Days", "sd__(Intercept)", "sd__Observation"]
    assert np.isfinite(fit.estimate[:2]).all() and np.isnan(fit.estimate[2:]).all()


@pytest.mark.parametrize("name", ["gee", "ols"])
def test_one_group_is_a_recorded_failure(frame, name):
    one = frame[frame["Subject"] == frame["Subject"].iloc[0]]
    data = LMMData.from_frame(one, y="Reaction", x=["Days"], group="Subject")
    fit = build_engine(name).fit(data)
    assert not fit.converged and "at least 2 groups" in fit.message
    assert np.isnan(fit.estimate).all() and fit.traceback == ""
    assert (fit.nobs, fit.ngroups) == (10.0, 1.0)


def test_t_reference_without_df_gives_no_interval(frame):
    """K - p = 0 (two clusters, two predictors besides the intercept): no t interval."""
    two = frame[frame["Subject"].isin(frame["Subject"].unique()[:2])].copy()
    two["Day2"] = two["Days"] ** 2
    data = LMMData.from_frame(two, y="Reaction", x=["Days", "Day2"], group="Subject")
    fit = build_engine("gee", {"reference": "t"}).fit(data)
    assert "t reference needs df > 0, got 0" in fit.message
    assert np.isfinite(fit.estimate[:3]).all() and np.isnan(fit.ci_lower[:3]).all()


def test_an_exception_is_recorded_with_its_traceback(data, monkeypatch):
    def boom(self, data):
        raise np.linalg.LinAlgError("Singular matrix")

    monkeypatch.setattr(GeeEngine, "_run", boom)
    fit = GeeEngine().fit(data)
    assert not fit.converged and fit.message == "LinAlgError: Singular matrix"
    assert "Traceback" in fit.traceback and "boom" in fit.traceback


def test_engines_pickle_and_refuse_wrong_options():
    import pickle

    engine = build_engine("gee", {"cov_type": "bias_reduced"})
    assert pickle.loads(pickle.dumps(engine)).options == engine.options
    with pytest.raises(TypeError, match="options must be GeeOptions; got OlsOptions"):
        GeeEngine(OlsOptions())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="options for engine 'gee' must be a GeeOptions"):
        build_engine("gee", OlsOptions())
