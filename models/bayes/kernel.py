"""The marginal log-likelihood of the q = 2 model (random intercept and slope) as one
PyTensor Op: a hand-written loop over groups, compiled by Numba, that returns the value
and its analytic gradient together (``algebra = "kernel"``).

Why by hand: PyTensor's graph of the same algebra (:func:`models.bayes.marginal.
marginal_loglik`, ``"unrolled"``) compiles to ~70 multiplications and 32 divisions a
group and costs 2.9 us a log-density + gradient at K = 40; this loop shares the
sub-expressions of value and gradient, has one division and one log a group, and
costs 1.1 us (measured 2026-11-24, nutpie 0.16.11, PyTensor 3.3.8), which takes a
default-preset fit from ~184 ms to ~118 ms of CPU.  No library provides a fused
marginal-LMM likelihood.  ``tests/models/test_bayes_kernel.py`` checks value and gradient
against the graph and against finite differences.

Inputs: packed statistics (7, K) (:func:`models.bayes.marginal.pack_stats`: n, y'y,
X'y (2), X'X (00, 01, 11)) and ``theta = (beta0, beta1, L00, L10, L11, sigma^2)`` with
``L`` the lower Cholesky factor of ``D``.  Outputs: the log-likelihood and its gradient
with respect to ``theta``; the Op's ``pullback`` multiplies the stored gradient, so the
compiled logp + dlogp function runs the loop once per evaluation.  The algebra is that
of :mod:`models.bayes.marginal` with ``A_i = L' X_i'X_i L + sigma^2 I``,
``v_i = L' X_i'r`` and ``w_i = A_i^-1 v_i``:

* d/d beta: ``X'r - X'X L w`` summed over groups, over sigma^2;
* d/d L: ``-(X'X L (A^-1 + w w' / sigma^2) - X'r w' / sigma^2)`` (lower triangle);
* d/d sigma^2: ``-((n - 2K) / sigma^2 + sum tr A^-1 + |w|^2 / sigma^2 - e / sigma^4) / 2``
  with ``e = r'r - sum v'w``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytensor.tensor as pt
from pytensor.gradient import DisconnectedType, disconnected_type
from pytensor.graph.basic import Apply
from pytensor.graph.op import Op

LOG_2PI = float(np.log(2.0 * np.pi))


def marginal2(stats: np.ndarray, theta: np.ndarray) -> tuple[float, np.ndarray]:
    """Log marginal likelihood and its gradient w.r.t. ``theta`` (plain Python; Numba
    compiles the same function for the sampler)."""
    b0, b1, l00, l10, l11, s2 = theta[0], theta[1], theta[2], theta[3], theta[4], theta[5]
    K = stats.shape[1]
    ca0 = l00 * l00
    ca1 = 2.0 * l00 * l10
    ca2 = l10 * l10
    cb1 = l00 * l11
    cb2 = l10 * l11
    cc = l11 * l11
    is2 = 1.0 / s2
    n_tot = 0.0
    rr = 0.0
    sld = 0.0
    squad = 0.0
    sz0 = 0.0
    sz1 = 0.0
    gb0 = 0.0
    gb1 = 0.0
    gl00 = 0.0
    gl10 = 0.0
    gl11 = 0.0
    gs2 = 0.0
    for i in range(K):
        n = stats[0, i]
        yty = stats[1, i]
        xty0 = stats[2, i]
        xty1 = stats[3, i]
        g00 = stats[4, i]
        g01 = stats[5, i]
        g11 = stats[6, i]
        z0 = xty0 - g00 * b0 - g01 * b1  # X'r
        z1 = xty1 - g01 * b0 - g11 * b1
        n_tot += n
        rr += yty - b0 * (xty0 + z0) - b1 * (xty1 + z1)
        sz0 += z0
        sz1 += z1
        a = ca0 * g00 + ca1 * g01 + ca2 * g11 + s2  # A = L'GL + s2 I
        b = cb1 * g01 + cb2 * g11
        c = cc * g11 + s2
        v0 = l00 * z0 + l10 * z1  # v = L'z
        v1 = l11 * z1
        det = a * c - b * b
        r = 1.0 / det
        p00 = c * r  # P = A^-1
        p01 = -b * r
        p11 = a * r
        w0 = p00 * v0 + p01 * v1  # w = A^-1 v
        w1 = p01 * v0 + p11 * v1
        sld += np.log(det)
        squad += v0 * w0 + v1 * w1
        m00 = g00 * l00 + g01 * l10  # GL
        m01 = g01 * l11
        m10 = g01 * l00 + g11 * l10
        m11 = g11 * l11
        q00 = p00 + w0 * w0 * is2  # P + w w' / s2
        q01 = p01 + w0 * w1 * is2
        q11 = p11 + w1 * w1 * is2
        gl00 += (m00 * q00 + m01 * q01) - z0 * w0 * is2
        gl10 += (m10 * q00 + m11 * q01) - z1 * w0 * is2
        gl11 += (m10 * q01 + m11 * q11) - z1 * w1 * is2
        gb0 += m00 * w0 + m01 * w1
        gb1 += m10 * w0 + m11 * w1
        gs2 += p00 + p11 + (w0 * w0 + w1 * w1) * is2
    e = rr - squad
    logp = -0.5 * (n_tot * LOG_2PI + (n_tot - 2.0 * K) * np.log(s2) + sld + e * is2)
    grad = np.empty(6)
    grad[0] = (sz0 - gb0) * is2
    grad[1] = (sz1 - gb1) * is2
    grad[2] = -gl00
    grad[3] = -gl10
    grad[4] = -gl11
    grad[5] = -0.5 * ((n_tot - 2.0 * K) * is2 + gs2 - e * is2 * is2)
    return logp, grad


class Marginal2(Op):
    """``(stats, theta) -> (loglik, d loglik / d theta)`` for q = 2."""

    __props__ = ()

    def make_node(self, stats: Any, theta: Any) -> Any:  # type: ignore[override]
        stats = pt.as_tensor_variable(stats)
        theta = pt.as_tensor_variable(theta)
        return Apply(self, [stats, theta], [pt.dscalar(), pt.dvector()])

    def perform(self, node, inputs, outputs):
        logp, grad = marginal2(np.asarray(inputs[0], float), np.asarray(inputs[1], float))
        outputs[0][0] = np.asarray(logp)
        outputs[1][0] = grad

    def infer_shape(self, node, shapes):
        return [(), (6,)]

    def pullback(self, inputs, outputs, output_grads):
        if not isinstance(output_grads[1].type, DisconnectedType):
            raise NotImplementedError("the gradient output is not differentiable")
        return [disconnected_type(), output_grads[0] * outputs[1]]

    def connection_pattern(self, node):
        return [[False, False], [True, True]]


def _register_numba() -> None:
    from pytensor.link.numba.dispatch.basic import numba_funcify, numba_njit

    @numba_funcify.register(Marginal2)
    def _funcify(op, node=None, **kwargs):
        # Jitted here, when a model is compiled, not at import: numba_njit reads
        # PyTensor's numba__fastmath flag when it is called, and the engine sets that
        # flag (off by default, for draws that are the same in every process) around
        # compilation.
        kernel = numba_njit(marginal2)

        @numba_njit
        def marginal2_op(stats, theta):
            logp, grad = kernel(stats, theta)
            return np.array(logp), grad

        return marginal2_op


_register_numba()
marginal2_op = Marginal2()


def marginal_loglik2(stats: Any, beta: list[Any], sigma: Any, L: list[list[Any]]) -> Any:
    """The log-likelihood term of :func:`models.bayes.marginal.marginal_loglik` for q = 2."""
    theta = pt.stack([beta[0], beta[1], L[0][0], L[1][0], L[1][1], sigma**2])
    outputs: Any = marginal2_op(stats, theta)
    return outputs[0]
