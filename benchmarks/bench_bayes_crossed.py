"""Benchmark: the Bayesian engine on crossed random effects, beside the one-factor engine.

Data (issue 27's crossed preset in small): ``--datasets`` replicates of a 24 subjects x
16 items design, every subject seeing every item, ``cond`` = +-0.5 counterbalanced
(Latin square: ``(subject + item) mod 2``), random intercepts and ``cond`` slopes by
subject (SDs 0.6, 0.3, correlation 0.3) and by item (0.4, 0.2, correlation 0.2),
``sigma = 1``, ``beta = (0, 0.3)``: 384 rows, L = 80 random-effect levels.  Beside them,
the same number of one-factor datasets of the same size: 24 groups x 16 rows, ``cond``
+-0.5 alternating within a group, a correlated random intercept and slope (0.6, 0.3,
0.3), ``sigma = 1``; and the project's ``tests/data/crossed.csv``.

Fitted, in turn on each replicate (so load on a shared machine hits all alike), with the
engine's default options (4 chains x 1000 draws after 1000 tuning draws, nutpie):

* ``crossed max``: ``y ~ cond + (1 + cond | subj) + (1 + cond | item)`` (marginal,
  Woodbury on the levels: the engine's model);
* ``crossed int``: ``y ~ cond + (1 | subj) + (1 | item)``;
* ``one-factor``: ``y ~ cond + (1 + cond | g)`` (the one-factor engine's model);
* ``latent max`` (unless ``--no-latent``): the maximal crossed model with the random
  effects kept as non-centred latent variables (``u_f = z_f T_f'``, ``z ~ N(0, 1)``),
  the same priors, nutpie from its default start: the alternative the issue names.

Printed: compile seconds per model; per dataset and model the wall seconds of the fit
(compilation excluded), max R-hat, min ESS_bulk over the terms, divergences; then per
model the median seconds per fit, the median CPU seconds (all threads of this process),
the median steps per draw where known, and the share of fits that converged (R-hat <=
1.01, no divergences, ESS_bulk >= 400 for every term).  Nothing is asserted.

Usage::

    .venv/bin/python benchmarks/bench_bayes_crossed.py                # about 3 minutes
    .venv/bin/python benchmarks/bench_bayes_crossed.py --datasets 3 --no-latent
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.bayes import BayesEngine, BayesOptions
from models.formula import model_data

ROOT = Path(__file__).resolve().parents[1]
MAX = "y ~ cond + (1 + cond | subj) + (1 + cond | item)"
INT = "y ~ cond + (1 | subj) + (1 | item)"
ONE = "y ~ cond + (1 + cond | g)"
SUBJECTS, ITEMS = 24, 16


def _cov(sd0: float, sd1: float, rho: float) -> np.ndarray:
    return np.array([[sd0**2, rho * sd0 * sd1], [rho * sd0 * sd1, sd1**2]])


def crossed_frame(rng: np.random.Generator) -> pd.DataFrame:
    """One replicate of the crossed design (module docstring)."""
    s = np.repeat(np.arange(SUBJECTS), ITEMS)
    i = np.tile(np.arange(ITEMS), SUBJECTS)
    cond = np.where((s + i) % 2 == 0, -0.5, 0.5)
    us = rng.multivariate_normal(np.zeros(2), _cov(0.6, 0.3, 0.3), SUBJECTS)
    ui = rng.multivariate_normal(np.zeros(2), _cov(0.4, 0.2, 0.2), ITEMS)
    y = 0.3 * cond + us[s, 0] + us[s, 1] * cond + ui[i, 0] + ui[i, 1] * cond
    y = y + rng.standard_normal(s.size)
    return pd.DataFrame(
        {"subj": [f"s{k:02d}" for k in s], "item": [f"i{k:02d}" for k in i], "cond": cond, "y": y}
    )


def one_factor_frame(rng: np.random.Generator) -> pd.DataFrame:
    """One replicate of the one-factor design of the same size (module docstring)."""
    g = np.repeat(np.arange(SUBJECTS), ITEMS)
    cond = np.where(np.arange(g.size) % 2 == 0, -0.5, 0.5)
    u = rng.multivariate_normal(np.zeros(2), _cov(0.6, 0.3, 0.3), SUBJECTS)
    y = 0.3 * cond + u[g, 0] + u[g, 1] * cond + rng.standard_normal(g.size)
    return pd.DataFrame({"g": [f"g{k:02d}" for k in g], "cond": cond, "y": y})


class Latent:
    """The maximal crossed model with non-centred latent random effects (nutpie)."""

    def __init__(self, data) -> None:
        import nutpie
        import pymc as pm
        import pytensor.tensor as pt

        from models.bayes.crossed import add_priors
        from models.bayes.graph import TERMS
        from models.bayes.options import BayesPriors

        s = data.structure
        with pm.Model() as model:
            y = pm.Data("y", data.y)
            p = add_priors(s, BayesPriors())
            mu = pt.dot(pt.constant(data.X), p["beta"])
            for f, (bar, k) in enumerate(zip(s.bars, data.levels, strict=True)):
                z = pm.Normal(f"z{f}", 0.0, 1.0, shape=(k, bar.r))
                u = pt.dot(z, p["Ts"][f].T)
                cols = np.column_stack([data.column(e) for e in bar.effects])
                mu = mu + pt.sum(pt.constant(cols) * u[data.codes[bar.group]], axis=1)
            pm.Normal("obs", mu, p["sigma"], observed=y)
        t0 = time.perf_counter()
        self.compiled = nutpie.compile_pymc_model(model, var_names=[TERMS])
        self.compile_seconds = time.perf_counter() - t0

    def fit(self, data, seed: int) -> dict[str, float]:
        import nutpie

        from models.bayes.graph import TERMS
        from models.bayes.sample import _diagnostics

        t0, c0 = time.perf_counter(), time.process_time()
        trace = nutpie.sample(
            self.compiled.with_data(y=data.y),
            chains=4,
            draws=1000,
            tune=1000,
            cores=2,
            seed=seed,
            progress_bar=False,
        )
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        draws = trace.posterior[TERMS].to_numpy()
        diag = _diagnostics(draws)
        stats = trace.sample_stats
        return {
            "seconds": wall,
            "cpu": cpu,
            "rhat": float(np.max(diag["rhat"])),
            "ess": float(np.min(diag["ess_bulk"])),
            "div": float(stats["diverging"].sum()),
            "steps": float(stats["n_steps"].mean()),
        }


def engine_fit(engine: BayesEngine, data, seed: int) -> dict[str, float]:
    c0 = time.process_time()
    fit = engine.fit(data, seed=seed)
    cpu = time.process_time() - c0
    return {
        "seconds": fit.fit_seconds,
        "cpu": cpu,
        "rhat": float(np.nanmax(fit.rhat)) if np.isfinite(fit.rhat).any() else np.inf,
        "ess": float(np.nanmin(fit.ess_bulk)) if np.isfinite(fit.ess_bulk).any() else 0.0,
        "div": fit.divergences,
        "steps": float("nan"),
        "message": fit.message,
    }


def converged(row: dict[str, float]) -> bool:
    return row["rhat"] <= 1.01 and row["div"] == 0 and row["ess"] >= 400


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", type=int, default=10, help="replicates per design")
    parser.add_argument("--seed", type=int, default=20261125)
    parser.add_argument("--no-latent", action="store_true", help="skip the latent model")
    args = parser.parse_args(argv)
    root = np.random.SeedSequence(args.seed)
    rngs = [np.random.default_rng(s) for s in root.spawn(2 * args.datasets)]
    crossed = [crossed_frame(r) for r in rngs[: args.datasets]]
    one = [one_factor_frame(r) for r in rngs[args.datasets :]]
    csv = pd.read_csv(ROOT / "tests" / "data" / "crossed.csv")
    sets = {
        "crossed max": [model_data(f, MAX)[0] for f in [csv, *crossed]],
        "crossed int": [model_data(f, INT)[0] for f in [csv, *crossed]],
        "one-factor": [model_data(f, ONE)[0] for f in one],
    }
    engine = BayesEngine(BayesOptions())
    print("compile (s): ", end="", flush=True)
    for name, datasets in sets.items():
        print(f"{name} {engine.compile(datasets[0]):.1f}", end="; ", flush=True)
    latent = None if args.no_latent else Latent(sets["crossed max"][0])
    if latent is not None:
        print(f"latent max {latent.compile_seconds:.1f}", end="", flush=True)
        sets["latent max"] = sets["crossed max"]
    print()
    rows: dict[str, list[dict[str, float]]] = {name: [] for name in sets}
    print(f"{'dataset':>11} {'model':>12} {'seconds':>8} {'R-hat max':>9} {'ESS min':>8} div")
    for k in range(args.datasets + 1):
        label = "crossed.csv" if k == 0 else f"sim {k}"
        for name, datasets in sets.items():
            if name == "one-factor" and k == 0:
                continue
            data = datasets[k if name != "one-factor" else k - 1]
            seed = args.seed + k
            row = latent.fit(data, seed) if name == "latent max" else engine_fit(engine, data, seed)
            rows[name].append(row)
            print(
                f"{label:>11} {name:>12} {row['seconds']:8.2f} {row['rhat']:9.4f} "
                f"{row['ess']:8.0f} {row['div']:4.0f}",
                flush=True,
            )
    print()
    print(
        f"{'model':>12} {'fits':>5} {'median s/fit':>12} {'median CPU s':>12} "
        f"{'steps/draw':>10} {'converged':>9} {'min ESS':>8} {'max R-hat':>9} {'div':>4}"
    )
    for name, rs in rows.items():
        steps = statistics.median(r["steps"] for r in rs)
        print(
            f"{name:>12} {len(rs):5d} {statistics.median(r['seconds'] for r in rs):12.2f} "
            f"{statistics.median(r['cpu'] for r in rs):12.2f} {steps:10.1f} "
            f"{sum(converged(r) for r in rs):4d}/{len(rs):<4d} {min(r['ess'] for r in rs):8.0f} "
            f"{max(r['rhat'] for r in rs):9.4f} {sum(r['div'] for r in rs):4.0f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
