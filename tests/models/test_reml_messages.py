"""What a REML fit's ``message`` says (issue 24, defect 1c).

statsmodels only finds the start point of the Newton polish; its warnings on the way
("Random effects covariance is singular", "Hessian not positive definite", "MLE may
be on the boundary") and optimizers that failed are moot once the polish converged to a
regular optimum, so a clean fit has an empty message.  What a user must know stays: a
fit that did not converge (with what statsmodels said), and a boundary (singular) fit.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import design_of_generator_1

from models.data import LMMData
from models.reml.engine import SINGULAR_NOTE, RemlEngine
from models.structure import Structure
from study.design.config import load_config


def cluster_trial(seed: int, groups: int = 30, size: int = 8) -> LMMData:
    """A cluster-randomised trial: ``treat`` is constant within each group (half the
    groups treated), random intercept SD 1, residual SD 1."""
    rng = np.random.default_rng(seed)
    group = np.repeat(np.arange(groups), size)
    treat = np.repeat((np.arange(groups) % 2).astype(float), size)
    X = np.column_stack([np.ones(groups * size), treat])
    y = 1.0 + 0.5 * treat + rng.normal(0.0, 1.0, groups)[group] + rng.normal(0.0, 1.0, group.size)
    structure = Structure(("(Intercept)", "treat"), ("(Intercept)",), True)
    return LMMData(y, X, group, ("treat",), structure=structure)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_a_group_level_predictor_fits_cleanly(seed: int) -> None:
    # before: seeds 0 and 1 failed outright (statsmodels' L-BFGS raised LinAlgError
    # "Singular matrix" after its "Random effects covariance is singular" warning) and
    # no fit had an empty message; the polish from another start converges
    fit = RemlEngine().fit(cluster_trial(seed))
    assert fit.converged and not fit.singular, fit.message
    assert fit.message == ""
    assert np.all(np.isfinite(fit.estimate)) and np.all(np.isfinite(fit.std_error))


@pytest.mark.parametrize("replicate", [1, 2, 3])
def test_a_start_up_warning_the_optimum_makes_moot_is_not_the_message(replicate: int) -> None:
    # slope-ignored: statsmodels warns "The MLE may be on the boundary of the parameter
    # space" on these replicates (seen before the fix); the polished optimum is regular
    cfg = load_config("slope-ignored")
    data = design_of_generator_1(cfg).sample(replicate).data  # the cases found then
    fit = RemlEngine().fit(data)
    assert fit.converged and not fit.singular, fit.message
    assert fit.message == ""


@pytest.mark.parametrize("replicate", [2, 3])
def test_a_boundary_fit_still_says_so(replicate: int) -> None:
    # small-groups: these replicates' REML optimum has a correlation at +-1 / an SD at 0
    # (replicate 2 had an empty message before the fix, replicate 3 only statsmodels'
    # Hessian warning)
    cfg = load_config("small-groups")
    data = design_of_generator_1(cfg).sample(replicate).data  # the cases found then
    fit = RemlEngine().fit(data)
    assert fit.converged and fit.singular
    assert fit.message.startswith(SINGULAR_NOTE)
    assert "boundary (singular) fit" in fit.message


def test_kenward_roger_in_a_balanced_cluster_trial_says_nothing() -> None:
    # a balanced cluster-level treatment makes KR's v2 exactly 0 (rho = inf): the df is
    # the limit, K - 2 = 4 between-cluster df for K = 6, and numpy's division warning
    # is not the fit's message (it was on 6 of 10 fits of cluster-trial's K = 6)
    from models.reml import RemlOptions
    from study.design.generate import Design

    cfg = load_config("cluster-trial")
    data = Design.from_study(cfg, cfg.conditions[0]).sample(1).data
    fit = RemlEngine(RemlOptions(ci="kenward-roger")).fit(data)
    assert fit.converged and fit.message == ""
    assert fit.df[1] == pytest.approx(4.0)
