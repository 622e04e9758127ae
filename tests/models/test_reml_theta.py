"""``psi_to_theta``: lme4's ``theta`` of a relative covariance, through the project's one
zero-pivot Cholesky (:func:`models.base.correlation_factor`), issue 24 item 6."""

from __future__ import annotations

import numpy as np

from models.reml.criterion import psi_to_theta, theta_index


def test_theta_is_the_cholesky_factor_in_lme4_order() -> None:
    rng = np.random.default_rng(3)
    for q in (1, 2, 3, 4):
        lam = np.tril(rng.normal(size=(q, q)))
        lam[np.diag_indices(q)] = np.abs(lam[np.diag_indices(q)]) + 0.1
        theta = psi_to_theta(lam @ lam.T)
        # Cholesky is unique with a positive diagonal; 1e-12: a few ulps of rounding
        np.testing.assert_allclose(theta, lam[theta_index(q)], rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(theta, np.linalg.cholesky(lam @ lam.T)[theta_index(q)])


def test_a_zero_pivot_gives_a_zero_column_not_an_error() -> None:
    # a correlation of exactly 1 (Psi = [[1, 2], [2, 4]], rank 1): Lambda = [[1, 0], [2, 0]]
    np.testing.assert_array_equal(psi_to_theta(np.array([[1.0, 2.0], [2.0, 4.0]])), [1, 2, 0])
    # a zero variance first: its whole column is 0
    psi = np.array([[0.0, 0.0], [0.0, 9.0]])
    np.testing.assert_array_equal(psi_to_theta(psi), [0, 0, 3])


def test_uncorrelated_theta_is_the_square_root_of_the_diagonal() -> None:
    psi = np.array([[4.0, 0.5], [0.5, 0.25]])
    np.testing.assert_array_equal(psi_to_theta(psi, correlated=False), [2.0, 0.5])
    assert psi_to_theta(np.array([[-1e-18]]), correlated=False)[0] == 0.0  # rounding below 0
