"""``report_se``, the 2018 report's "true SE" (issue 24, items 1d and 8).

The report applied ``Var(beta_hat) = (sum_i X_i' V_i^-1 X_i)^-1``,
``V_i = X_i D X_i' + sigma^2 I`` (design.md section 1), to one copy of each class's
50 X values, although each class was analysed 50 times over (``repeats = 50``).
Before, the only check was ``rtol = 0.03`` against the report's 0.165 / 0.316: a 2%
error in the formula passed.
"""

from __future__ import annotations

import numpy as np

from study.design.config import load_config
from study.design.generate import Design
from study.design.truth import compute_truth


def _dense_gls_se(design: Design) -> np.ndarray:
    """The report's formula by brute force: n_i x n_i matrices on one copy of each
    class (the first n_i / repeats rows of the group: ``Design`` tiles each class's
    subjects ``repeats`` times, in order)."""
    cfg = design.config
    W = np.zeros((cfg.q, cfg.q))
    for g, size in enumerate(cfg.sizes):
        X = design.X[design.group == g][: int(size)]
        V = X @ cfg.D @ X.T + cfg.sigma**2 * np.eye(len(X))
        W += X.T @ np.linalg.solve(V, X)
    return np.sqrt(np.diag(np.linalg.inv(W)))


def test_report_se_is_the_formula_on_one_copy_of_each_class():
    design = Design.from_study(load_config("seed"))
    truth = compute_truth(design)
    assert truth.report_se is not None and design.config.repeats == 50
    q = design.config.q
    # exact, against an independent dense computation (no Woodbury identities)
    np.testing.assert_allclose(truth.report_se[:q], _dense_gls_se(design), rtol=1e-10)
    assert np.isnan(truth.report_se[q:]).all()  # no SE for the variance parameters


def test_report_se_to_the_reports_three_decimals():
    """The report printed 0.165 (intercept) and 0.316 (slope), 3 decimals.  Rounded
    alike: the default preset's true SEs (one copy of each class, no repeats) are
    exactly those; the seed preset's report_se has the slope's 0.316 and, on its own
    draw of X (round(Uniform(1, 20)), not the report's R draw), 0.166 for the
    intercept.  A 1% error in either changes a third decimal."""
    default = compute_truth(Design.from_study(load_config("default")))
    np.testing.assert_array_equal(np.round(default.se[:2], 3), [0.165, 0.316])
    seed = compute_truth(Design.from_study(load_config("seed")))
    assert seed.report_se is not None
    np.testing.assert_array_equal(np.round(seed.report_se[:2], 3), [0.166, 0.316])


def test_report_se_only_where_classes_are_repeated(write_config):
    """The report's formula differs from the truth only for repeated classes: it is
    given (and shown by ``study truth`` / the report) where ``repeats > 1``, whatever
    the preset, and absent (not a column of NaN) otherwise."""
    text = """
name = "rep"
replicates = 2
[design]
groups = 6
group_size = 6
[conditions]
repeats = [1, 3]
[engines]
run = ["reml"]
"""
    cfg = load_config(write_config(text))
    by_repeats = {
        c.design.repeats: compute_truth(Design.from_study(cfg, c)) for c in cfg.conditions
    }
    assert by_repeats[1].report_se is None
    assert "report_se" not in by_repeats[1].to_frame()
    three = by_repeats[3]
    assert three.report_se is not None and "report_se" in three.to_frame()
    # with repeats the report's formula overstates the intercept's SE of the data
    assert three.report_se[0] > three.se[0]
    assert compute_truth(Design.from_study(load_config("default"))).report_se is None
