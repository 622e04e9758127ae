"""Benchmark of the Bayesian engine on the seed design (docs/architecture.md; the 2018 design).

Seed design: K = 40 groups of 50 subjects, X = round(Uniform(1, 20)) per subject
(drawn once), beta = (5, 2), D = diag(1, 4), sigma = 1: 2,000 rows; with
``repeats = 50`` each group's 50 X values are repeated 50 times with new noise and
the same u: 100,000 rows.  Each replicate draws new u and new noise.

Measured: one-time compile seconds; median seconds per replicate after compile
(4 chains x 1000 draws after 1000 tuning draws); min ESS_bulk over terms; share of
replicates with max R-hat <= 1.01; for the marginal model under nutpie and for the
naive latent non-centred model under PyMC's NUTS; and the ESS-per-second ratio.

``--structures`` instead compares random-effects structures with q = 2 on the same
datasets (repeats = 1: K = 40 groups of 50 rows; default options): the full model
``(1 + X | g)``, a random intercept only ``(1 | g)`` and uncorrelated ``(1 + X || g)``,
fitted in turn on each replicate (so load on the machine hits all alike): median wall
and CPU seconds per fit (CPU of this process's threads) and the share converged.

Usage::

    .venv/bin/python benchmarks/bench_bayes.py --replicates 20 --naive-replicates 1
    .venv/bin/python benchmarks/bench_bayes.py --structures --replicates 20
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.bayes import BayesEngine, BayesOptions
from models.data import LMMData
from models.structure import INTERCEPT, Structure

BETA = np.array([5.0, 2.0])
D = np.diag([1.0, 4.0])
SIGMA = 1.0


def seed_design(rng: np.random.Generator, k: int = 40, n: int = 50) -> np.ndarray:
    """The X design, drawn once: (K, n) values round(Uniform(1, 20))."""
    return np.round(rng.uniform(1, 20, size=(k, n)))


def simulate(x: np.ndarray, repeats: int, rng: np.random.Generator) -> LMMData:
    """One replicate: new u_i ~ N(0, D), new noise; X repeated ``repeats`` times."""
    k = x.shape[0]
    xs = np.tile(x, (1, repeats))  # each group's n values, repeated
    u = rng.multivariate_normal(np.zeros(2), D, size=k)
    y = BETA[0] + u[:, :1] + (BETA[1] + u[:, 1:]) * xs + SIGMA * rng.standard_normal(xs.shape)
    X = np.column_stack([np.ones(xs.size), xs.ravel()])
    return LMMData(y.ravel(), X, np.repeat(np.arange(k), xs.shape[1]), ("X",))


def run(
    engine: BayesEngine, x: np.ndarray, repeats: int, replicates: int, seed: int
) -> dict[str, float]:
    """Compile once, then fit ``replicates`` datasets; figures for one engine/design."""
    root = np.random.SeedSequence(seed)
    datasets = [
        simulate(x, repeats, np.random.default_rng(root.spawn(1)[0])) for _ in range(replicates)
    ]
    compile_seconds = engine.compile(datasets[0])
    seconds, cpu, min_ess, max_rhat, divs, msgs = [], [], [], [], [], []
    for r, data in enumerate(datasets):
        cpu0 = time.process_time()  # CPU of all this process's threads
        res = engine.fit(data, seed=seed + r)
        cpu.append(time.process_time() - cpu0)
        seconds.append(res.fit_seconds)
        ess, rhat = np.asarray(res.ess_bulk), np.asarray(res.rhat)
        min_ess.append(float(np.nanmin(ess)) if np.isfinite(ess).any() else 0.0)
        max_rhat.append(float(np.nanmax(rhat)) if np.isfinite(rhat).any() else np.inf)
        divs.append(res.divergences)
        if res.message:
            msgs.append(f"replicate {r}: {res.message}")
        print(
            f"    rep {r:3d}: {res.fit_seconds:7.3f} s (cpu {cpu[-1]:6.3f} s)  "
            f"min ESS_bulk {min_ess[-1]:7.0f}  "
            f"max R-hat {max_rhat[-1]:.4f}  divergences {res.divergences:.0f}",
            flush=True,
        )
    sec = np.array(seconds)
    ess = np.array(min_ess)
    return {
        "rows": datasets[0].n_obs,
        "replicates": replicates,
        "compile_s": compile_seconds,
        "first_s": float(sec[0]),
        "median_s": float(np.median(sec)),
        "median_s_after_first": float(np.median(sec[1:])) if len(sec) > 1 else float(sec[0]),
        "median_cpu_s": float(np.median(cpu)),
        "min_ess": float(ess.min()),
        "median_min_ess": float(np.median(ess)),
        "rhat_ok": float(np.mean(np.array(max_rhat) <= 1.01)),
        "divergences": float(np.sum(divs)),
        "ess_per_s": float(np.median(ess / sec)),
        "messages": len(msgs),
    }


def report(label: str, fig: dict[str, float]) -> None:
    """Print one block of figures."""
    print(
        f"  {label}: rows {fig['rows']:,.0f}, replicates {fig['replicates']:.0f}\n"
        f"    compile (one time)          {fig['compile_s']:8.2f} s\n"
        f"    first fit after compile     {fig['first_s']:8.3f} s\n"
        f"    median s / replicate        {fig['median_s']:8.3f} s "
        f"(excluding first: {fig['median_s_after_first']:.3f} s)\n"
        f"    median CPU s / replicate    {fig['median_cpu_s']:8.3f} s "
        "(CPU of this process's threads)\n"
        f"    min ESS_bulk (all reps)     {fig['min_ess']:8.0f}  "
        f"(median over reps {fig['median_min_ess']:.0f})\n"
        f"    share max R-hat <= 1.01     {100 * fig['rhat_ok']:7.1f} %\n"
        f"    divergences (total)         {fig['divergences']:8.0f}\n"
        f"    median min-ESS_bulk / s     {fig['ess_per_s']:8.1f}\n",
        flush=True,
    )


def compare_structures(x: np.ndarray, replicates: int, seed: int, cores: int) -> None:
    """Seconds per fit of three q = 2 structures on the same datasets, side by side."""
    fixed = (INTERCEPT, "X")
    structures = {
        "(1 + X | g)": Structure(fixed),
        "(1 | g)": Structure(fixed, (INTERCEPT,)),
        "(1 + X || g)": Structure(fixed, fixed, correlated=False),
    }
    root = np.random.SeedSequence(seed)
    datasets = [simulate(x, 1, np.random.default_rng(root.spawn(1)[0])) for _ in range(replicates)]
    engine = BayesEngine(BayesOptions(cores=cores))
    compile_s = {
        name: engine.compile(datasets[0].with_structure(s)) for name, s in structures.items()
    }
    wall: dict[str, list[float]] = {name: [] for name in structures}
    cpu: dict[str, list[float]] = {name: [] for name in structures}
    ok: dict[str, list[bool]] = {name: [] for name in structures}
    for r, data in enumerate(datasets):
        for name, s in structures.items():
            cpu0 = time.process_time()
            res = engine.fit(data.with_structure(s), seed=seed + r)
            cpu[name].append(time.process_time() - cpu0)
            wall[name].append(res.fit_seconds)
            ok[name].append(res.converged)
    print(
        f"structures, q = 2, K = 40 groups x 50 rows, default options (cores={cores}), "
        f"{replicates} replicates each, fitted in turn"
    )
    print(
        f"  {'structure':14s} {'compile s':>9s} {'median s/fit':>12s} {'median CPU s':>12s} "
        f"{'converged':>9s}"
    )
    for name in structures:
        print(
            f"  {name:14s} {compile_s[name]:9.2f} {np.median(wall[name]):12.4f} "
            f"{np.median(cpu[name]):12.4f} "
            f"{100 * np.mean(ok[name]):8.0f}%"
        )
    base = np.median(wall["(1 + X | g)"])
    for name in list(structures)[1:]:
        print(f"  {name} / (1 + X | g) median s per fit: {np.median(wall[name]) / base:.2f}")


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--replicates", type=int, default=20, help="marginal replicates")
    parser.add_argument("--naive-replicates", type=int, default=1)
    parser.add_argument("--skip-naive", action="store_true", help="skip the latent model")
    parser.add_argument(
        "--naive-repeats",
        type=int,
        nargs="*",
        default=[1],
        help="repeats values (designs) for the naive model; default only the 2,000-row one",
    )
    parser.add_argument("--repeats", type=int, nargs="*", default=[1, 50])
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument(
        "--algebra",
        choices=["auto", "unrolled", "batched"],
        default="auto",
        help="marginal likelihood algebra (batched = pytensor linalg over groups)",
    )
    parser.add_argument("--fastmath", action="store_true", help="Numba fastmath for nutpie")
    parser.add_argument("--seed", type=int, default=20180101)
    parser.add_argument(
        "--structures",
        action="store_true",
        help="only compare random-effects structures with q = 2 (K = 40, n = 50)",
    )
    args = parser.parse_args(argv)

    import nutpie
    import pymc

    print(
        f"bench_bayes: PyMC {pymc.__version__}, nutpie {nutpie.__version__}, "
        f"{os.cpu_count()} CPUs, cores={args.cores}, load avg {os.getloadavg()[0]:.2f}"
    )
    print("4 chains x 1000 draws after 1000 tuning draws; times exclude compilation\n")
    x = seed_design(np.random.default_rng(args.seed))
    if args.structures:
        compare_structures(x, args.replicates, args.seed, args.cores)
        return
    base = {"chains": 4, "draws": 1000, "tune": 1000, "cores": args.cores}
    marginal = BayesEngine(
        BayesOptions(
            parameterization="marginal",
            sampler="nutpie",
            algebra=args.algebra,
            fastmath=args.fastmath,
            **base,
        )
    )
    results = {}
    for repeats in args.repeats:
        print(
            f"marginal model, nutpie, algebra={args.algebra}, fastmath={args.fastmath}, "
            f"repeats={repeats}",
            flush=True,
        )
        results[("marginal", repeats)] = fig = run(marginal, x, repeats, args.replicates, args.seed)
        report(f"marginal/nutpie repeats={repeats}", fig)
    if not args.skip_naive:
        for repeats in args.naive_repeats:
            naive = BayesEngine(
                BayesOptions(parameterization="noncentered", sampler="pymc", **base)
            )
            print(f"naive non-centred latent model, PyMC NUTS, repeats={repeats}", flush=True)
            results[("naive", repeats)] = fig = run(
                naive, x, repeats, args.naive_replicates, args.seed
            )
            report(f"naive/pymc repeats={repeats} (time includes pm.sample's compile)", fig)

    print("summary")
    for (kind, _repeats), fig in results.items():
        print(
            f"  {kind:8s} rows {fig['rows']:>7,.0f}: median {fig['median_s']:8.3f} s, "
            f"cpu {fig['median_cpu_s']:7.3f} s, "
            f"min ESS_bulk {fig['min_ess']:6.0f}, R-hat ok {100 * fig['rhat_ok']:5.1f} %, "
            f"ESS/s {fig['ess_per_s']:9.1f}"
        )
    small, large = results.get(("marginal", 1)), results.get(("marginal", 50))
    if small and large:
        ratio = large["median_s"] / small["median_s"]
        print(f"  marginal time ratio 100,000 / 2,000 rows: {ratio:.2f}")
    for repeats in args.naive_repeats:
        naive_fig = results.get(("naive", repeats))
        marg = results.get(("marginal", repeats))
        if naive_fig and marg:
            ratio = marg["ess_per_s"] / max(naive_fig["ess_per_s"], 1e-12)
            print(f"  ESS/s ratio marginal vs naive (repeats={repeats}): {ratio:,.0f}x")


if __name__ == "__main__":
    main()
