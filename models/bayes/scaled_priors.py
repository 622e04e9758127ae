"""Default priors scaled to a user's data (for ``study fit`` on data of unknown scale).

The engine's fixed defaults (:class:`models.bayes.BayesPriors`) suit data on roughly
unit scale and are what simulation studies use (they must not depend on the data, so
that simulation-based calibration is meaningful).  For one real dataset whose scale is
unknown, priors are scaled as rstanarm's and bambi's defaults are, with ``s_y = sd(y)``
and ``s_k = sd(x_k)``, ``m_k = mean(x_k)``:

* slope k: ``Normal(0, 2.5 s_y / s_k)``;
* intercept (at x = 0, uncentred): ``Normal(mean(y), 2.5 s_y sqrt(1 + sum_k (m_k/s_k)^2))``,
  the prior implied for the intercept of uncentred predictors by a
  ``Normal(mean(y), 2.5 s_y)`` prior on the centred intercept and the slope priors;
* random-effect SDs, one per random effect of the data's structure: half-t(3) with
  scale ``s_y`` (intercept) and ``s_y / s_k`` (slopes);
* residual SD: half-t(3) with scale ``s_y``; correlations: LKJ(2), as the fixed defaults.

For several random terms (a :class:`models.crossed.CrossedData`) every SD term is scaled
the same way (``s_y`` for an intercept, ``s_y / s_x`` for a slope on ``x``), one value
per SD term in the order of the terms.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from models.structure import INTERCEPT, Structure

if TYPE_CHECKING:
    from models.crossed import CrossedData, CrossedStructure
    from models.data import LMMData


def _sd_of(x: np.ndarray) -> float:
    sd = float(np.std(x, ddof=1)) if x.size > 1 else float("nan")
    return sd if np.isfinite(sd) and sd > 0 else 1.0


def scaled_priors(data: LMMData | CrossedData) -> dict[str, Any]:
    """Prior table (keys of ``BayesPriors``) scaled to ``data`` for ``data.structure``
    (``fixed_*``: one value per fixed effect, ``sd_scale``: one per random effect, or
    per SD term for several random terms); plain floats and lists."""
    s = data.structure
    y = data.y
    s_y = float(np.std(y, ddof=1))
    if not np.isfinite(s_y) or s_y <= 0:
        s_y = 1.0
    slope = np.array([name != INTERCEPT for name in s.fixed])
    x = data.X[:, slope]
    s_x = np.ones(s.q)
    m_x = np.zeros(s.q)
    if x.shape[1]:
        sd = np.std(x, axis=0, ddof=1)
        s_x[slope] = np.where(np.isfinite(sd) & (sd > 0), sd, 1.0)
        m_x[slope] = np.mean(x, axis=0)
    intercept_scale = 2.5 * s_y * float(np.sqrt(1.0 + np.sum((m_x[slope] / s_x[slope]) ** 2)))
    slope_scale = 2.5 * s_y / s_x
    if isinstance(s, Structure):
        sd_scale = [float(s_y / s_x[j]) if slope[j] else s_y for j in s.index]
    else:  # several random terms: a CrossedData
        column = data.column  # type: ignore[union-attr]
        sd_scale = [
            s_y if e == INTERCEPT else s_y / _sd_of(column(e)) for b in s.bars for e in b.effects
        ]
    return {
        "fixed_loc": [float(np.mean(y)) if not sl else 0.0 for sl in slope],
        "fixed_scale": [
            float(slope_scale[j]) if sl else intercept_scale for j, sl in enumerate(slope)
        ],
        "sd_family": "halft",
        "sd_scale": sd_scale,
        "sd_df": 3.0,
        "lkj_eta": 2.0,
        "sigma_family": "halft",
        "sigma_scale": s_y,
        "sigma_df": 3.0,
    }


def describe_priors(
    table: dict[str, Any], names: tuple[str, ...] | Structure | CrossedStructure
) -> str:
    """One line per prior, for printing with a fit.  ``names``: the model's
    :class:`Structure` (or :class:`models.crossed.CrossedStructure`), or the
    fixed-effect names of the all-slopes model."""

    def fmt(v: Any, i: int) -> str:
        return f"{(v[i] if isinstance(v, list | tuple) else v):.4g}"

    if not isinstance(names, Structure | tuple | list):  # several random terms
        return _describe_crossed(table, names, fmt)
    s = names if isinstance(names, Structure) else Structure(tuple(names))

    lines = []
    for i, n in enumerate(s.fixed):
        line = f"  {n}: Normal({fmt(table['fixed_loc'], i)}, {fmt(table['fixed_scale'], i)})"
        if n in s.random:
            j = s.random.index(n)
            line += f"; sd__{n}: half-t({table['sd_df']:g}, {fmt(table['sd_scale'], j)})"
        lines.append(line)
    lines.append(f"  sd__Observation: half-t({table['sigma_df']:g}, {table['sigma_scale']:.4g})")
    if s.pairs:
        lines.append(f"  correlations: LKJ({table['lkj_eta']:g})")
    return "\n".join(lines)


def for_data(data: LMMData | CrossedData) -> tuple[dict[str, Any], list[str]]:
    """The options for fitting a user's dataset (the engine's ``data_options``): priors
    scaled to ``data``, and the lines that describe them."""
    priors = scaled_priors(data)
    notes = [
        "priors (scaled to the data, rstanarm-style):",
        describe_priors(priors, data.structure),
    ]
    return {"priors": priors}, notes


def _describe_crossed(table: dict[str, Any], s: CrossedStructure, fmt: Any) -> str:
    lines = [
        f"  {n}: Normal({fmt(table['fixed_loc'], i)}, {fmt(table['fixed_scale'], i)})"
        for i, n in enumerate(s.fixed)
    ]
    at = 0
    for b in s.bars:
        for name in b.names()[: b.r]:
            lines.append(f"  {name}: half-t({table['sd_df']:g}, {fmt(table['sd_scale'], at)})")
            at += 1
        if b.pairs:
            lines.append(f"  correlations of {b.text()}: LKJ({table['lkj_eta']:g})")
    lines.append(f"  sd__Observation: half-t({table['sigma_df']:g}, {table['sigma_scale']:.4g})")
    return "\n".join(lines)
