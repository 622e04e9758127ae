"""Benchmark of the REML engine: the median fit time of every inference option (issue 12).

Data: replicates of the study presets, built by the study's own generator
(``Design.from_study(load_config(preset)).sample(r).data``): ``default`` (K = 40 groups
of 50 rows, x = round(Uniform(1, 20)), beta = (5, 2), random-effect SDs (1, 2),
uncorrelated, sigma = 1, new u every replicate: 2,000 rows) and ``seed`` (the same
design with each group's 50 x values repeated 50 times and u fixed: 100,000 rows).

Measured on the same datasets, in one process, one BLAS thread (as every fit of a
study runs; R's reference BLAS is single-threaded too), after one untimed warm-up fit
of each configuration:

* the baseline, "today's" REML fit: engine version 1, statsmodels only --
  ``MixedLM(y, X, group, exog_re=X).fit(reml=True, method=["lbfgs"])`` from the
  moment starts of ``start_covariance`` (plus the data check v1 ran), wall time of
  model construction, starts and fit;
* ``RemlEngine(RemlOptions(ci=..., ran_pars_ci=...)).fit`` (its ``fit_seconds``) for
  ``ci`` in wald, t, satterthwaite, kenward-roger with ``ran_pars_ci="wald"``, and
  ``ci="wald"`` with ``ran_pars_ci`` "none" and "profile" (profile on fewer datasets);
* where ``Rscript`` is on PATH and ``library(lme4)`` loads: one Rscript process reads
  the same datasets from a CSV per size and times (``proc.time`` elapsed, one warm-up
  fit first) ``lme4::lmer(y ~ x + (x | g), REML = TRUE)`` on every dataset, and on a
  few: ``lmerTest::lmer`` + ``summary(ddf = "Satterthwaite")``, + ``summary(ddf =
  "Kenward-Roger")`` (pbkrtest; 2,000 rows only: it forms N x N matrices), and the
  lmer fit + ``confint(method = "profile", parm = "theta_")`` (about 65 s a fit at
  100,000 rows, so off there by default).  lme4's times include its model-frame
  set-up from the data frame, as a user of lme4 pays it; R is a benchmark-only peer,
  never a dependency of the package.

Printed: per configuration, the median fit seconds at each size, the ratio to the
baseline's median on the same datasets, and converged counts; the REML criterion
difference ours - lme4 per size (should be <= 1e-6); the projected 1000-replicate
REML time at 2,000 rows (median x 1000, fit seconds on one core) per option with its
ratio to the baseline and whether it is within 2x; and whether the default
(ci="wald", ran_pars_ci="wald") is within 1.5x of the baseline median.  Nothing is
asserted: the machine may be shared, so read the ratios (configurations are
interleaved dataset by dataset, so load hits them alike) rather than the seconds.

Usage::

    .venv/bin/python benchmarks/bench_reml.py                  # about 75 s on 2 cores
    .venv/bin/python benchmarks/bench_reml.py --datasets 100 --large-datasets 10
    .venv/bin/python benchmarks/bench_reml.py --no-r           # without the lme4 peer
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from statsmodels.regression.mixed_linear_model import MixedLM, MixedLMParams
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.data import LMMData, fit_problem
from models.reml import RemlEngine, RemlOptions, start_covariance
from study.design.config import load_config
from study.design.generate import Design

BASELINE = "statsmodels lbfgs only (engine v1)"
DEFAULT = ("wald", "wald")
#: (ci, ran_pars_ci) of every option measured; the first is the engine's default
OPTIONS = [
    ("wald", "wald"),
    ("t", "wald"),
    ("satterthwaite", "wald"),
    ("kenward-roger", "wald"),
    ("wald", "none"),
    ("wald", "profile"),
]
#: the targets of issue 12
STUDY_BOUND = 2.0  # a 1000-replicate study within 2x of today's REML time
FIT_BOUND = 1.5  # the default REML fit within 1.5x of today's median fit time
CRIT_TOL = 1e-6  # REML criterion ours - lme4
SIZES = ("small", "large")

R_SCRIPT = r"""
args <- commandArgs(trailingOnly = TRUE)
if (!suppressWarnings(suppressMessages(requireNamespace("lme4", quietly = TRUE)))) {
  cat("NOLME4\n"); quit(status = 0)
}
suppressPackageStartupMessages(library(lme4))
has <- function(p) suppressWarnings(suppressMessages(requireNamespace(p, quietly = TRUE)))
have_test <- has("lmerTest")
have_kr <- have_test && has("pbkrtest")
ver <- function(p) if (has(p)) as.character(packageVersion(p)) else "not installed"
cat(sprintf("INFO\t%s; lme4 %s; lmerTest %s; pbkrtest %s\n", R.version.string,
            ver("lme4"), ver("lmerTest"), ver("pbkrtest")))
now <- function() proc.time()[["elapsed"]]
out <- function(size, kind, i, s, crit = NA, ok = 1) {
  cat(sprintf("RESULT\t%s\t%s\t%d\t%.6f\t%.10f\t%d\n", size, kind, i, s, crit, ok))
}
form <- y ~ x + (x | g)
warm <- TRUE
for (k in seq(1, length(args), by = 5)) {
  size <- args[k]; path <- args[k + 1]
  n_satt <- as.integer(args[k + 2]); n_kr <- as.integer(args[k + 3])
  n_prof <- as.integer(args[k + 4])
  d <- read.csv(path)
  d$g <- factor(d$g)
  parts <- split(d, d$dataset)
  if (warm) {  # load and byte-compile what the timed fits use
    invisible(lmer(form, parts[[1]], REML = TRUE))
    if (have_test) invisible(summary(lmerTest::lmer(form, parts[[1]], REML = TRUE)))
    warm <- FALSE
  }
  for (j in seq_along(parts)) {
    s <- parts[[j]]; i <- as.integer(names(parts)[j])
    t0 <- now()
    fit <- tryCatch(suppressWarnings(suppressMessages(lmer(form, s, REML = TRUE))),
                    error = function(e) NULL)
    t_fit <- now() - t0
    if (is.null(fit)) { out(size, "lmer", i, t_fit, NA, 0); next }
    ok <- as.integer(is.null(fit@optinfo$conv$lme4$messages))
    out(size, "lmer", i, t_fit, REMLcrit(fit), ok)
    if (have_test && j <= max(n_satt, n_kr)) {
      t0 <- now()
      ft <- suppressWarnings(suppressMessages(lmerTest::lmer(form, s, REML = TRUE)))
      t_test <- now() - t0
      if (j <= n_satt) {
        t0 <- now(); invisible(summary(ft, ddf = "Satterthwaite"))
        out(size, "satterthwaite", i, t_test + now() - t0)
      }
      if (have_kr && j <= n_kr) {
        t0 <- now(); invisible(summary(ft, ddf = "Kenward-Roger"))
        out(size, "kenward-roger", i, t_test + now() - t0)
      }
    }
    if (j <= n_prof) {
      t0 <- now()
      ci <- tryCatch(suppressWarnings(suppressMessages(
        confint(fit, method = "profile", parm = "theta_", oldNames = FALSE))),
        error = function(e) NULL)
      out(size, "profile", i, t_fit + now() - t0, NA, as.integer(!is.null(ci)))
    }
  }
}
cat("DONE\n")
"""
#: R's lines: (kind in R's output, label, the option of ours it matches)
R_KINDS = [
    ("lmer", "lme4 lmer REML fit (R)", ("wald", "wald")),
    ("satterthwaite", "lmerTest fit + Satterthwaite summary", ("satterthwaite", "wald")),
    ("kenward-roger", "lmerTest fit + Kenward-Roger (pbkrtest)", ("kenward-roger", "wald")),
    ("profile", "lmer fit + confint profile theta_", ("wald", "profile")),
]


@dataclass
class Times:
    """Per-dataset figures of one configuration at one size (keyed by dataset index)."""

    seconds: dict[int, float] = field(default_factory=dict)
    cpu: dict[int, float] = field(default_factory=dict)
    converged: dict[int, bool] = field(default_factory=dict)
    criterion: dict[int, float] = field(default_factory=dict)

    def median(self, keys: list[int] | None = None) -> float:
        keys = sorted(self.seconds) if keys is None else keys
        return float(np.median([self.seconds[k] for k in keys])) if keys else float("nan")

    def mean(self) -> float:
        return float(np.mean(list(self.seconds.values()))) if self.seconds else float("nan")


def label(option: tuple[str, str]) -> str:
    ci, ran = option
    text = f"ci={ci}, ran_pars_ci={ran}"
    return text + " (default)" if option == DEFAULT else text


def baseline_fit(data: LMMData) -> tuple[float, float, bool, float]:
    """Today's REML fit (engine v1): statsmodels L-BFGS from the moment starts.

    Returns wall seconds, CPU seconds, converged, REML criterion (-2 restricted loglik).
    """
    t0, c0 = time.perf_counter(), time.process_time()
    with warnings.catch_warnings(record=True):  # v1 recorded warnings the same way
        warnings.simplefilter("always")
        problem = fit_problem(data)
        if problem:
            raise ValueError(problem)
        model = MixedLM(data.y, data.X, data.group, exog_re=data.X)
        psi0, _ = start_covariance(data)
        start = MixedLMParams.from_components(np.zeros(data.q), cov_re=psi0)
        res = model.fit(
            start_params=start, reml=True, method=["lbfgs"], maxiter=500, full_output=True
        )
        res.cov_params()
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    return seconds, cpu, bool(res.converged), float(-2.0 * res.llf)


def make_datasets(preset: str, count: int) -> list[LMMData]:
    """Replicates ``0..count-1`` of ``preset``, from the study's own generator."""
    design = Design.from_study(load_config(preset))
    return [design.sample(r).data for r in range(count)]


def measure(
    datasets: list[LMMData], n_profile: int, engines: dict[tuple[str, str], RemlEngine]
) -> dict[str, Times]:
    """Every configuration on every dataset (profile on the first ``n_profile``),
    interleaved dataset by dataset with the order rotated, after a warm-up."""
    configs: list[str | tuple[str, str]] = [BASELINE, *OPTIONS]
    for config in configs:  # warm-up, untimed
        if config == BASELINE:
            baseline_fit(datasets[0])
        elif isinstance(config, tuple):
            engines[config].fit(datasets[0])
    out = {label(c) if isinstance(c, tuple) else c: Times() for c in configs}
    for i, data in enumerate(datasets):
        shift = i % len(configs)
        for config in configs[shift:] + configs[:shift]:
            if config == BASELINE:
                t = out[BASELINE]
                s, c, ok, crit = baseline_fit(data)
            elif isinstance(config, tuple):
                if config[1] == "profile" and i >= n_profile:
                    continue
                t = out[label(config)]
                c0 = time.process_time()
                res = engines[config].fit(data)
                s, c = res.fit_seconds, time.process_time() - c0
                ok, crit = res.converged, float(res.criterion)
            t.seconds[i], t.cpu[i], t.converged[i], t.criterion[i] = s, c, ok, crit
    return out


def run_r(
    datasets: dict[str, list[LMMData]], plan: dict[str, tuple[int, int, int]]
) -> tuple[dict[str, dict[str, Times]], list[str]]:
    """lme4 (and lmerTest/pbkrtest where installed) on the same datasets, in one Rscript.

    ``plan[size]`` = datasets for Satterthwaite, Kenward-Roger, profile.  Returns the
    times per size and kind, and notes (versions, what was not available).
    """
    rscript = shutil.which("Rscript")
    if rscript is None:
        return {}, ["lme4: Rscript is not on PATH; no lme4 figures"]
    with tempfile.TemporaryDirectory(prefix="bench-reml-") as tmp:
        args: list[str] = []
        for size, sets in datasets.items():
            frame = pd.concat(
                pd.DataFrame({"dataset": i, "y": d.y, "x": d.X[:, 1], "g": d.group})
                for i, d in enumerate(sets)
            )
            path = Path(tmp) / f"{size}.csv"
            frame.to_csv(path, index=False, float_format="%.17g")
            args += [size, str(path), *(str(n) for n in plan[size])]
        script = Path(tmp) / "bench.R"
        script.write_text(R_SCRIPT)
        proc = subprocess.run(
            [rscript, "--vanilla", str(script), *args], capture_output=True, text=True
        )
    lines = proc.stdout.splitlines()
    if "NOLME4" in lines:
        return {}, ["lme4: library(lme4) does not load; no lme4 figures"]
    if proc.returncode != 0 or "DONE" not in lines:
        tail = "\n".join(proc.stderr.splitlines()[-10:])
        return {}, [f"lme4: Rscript failed ({proc.returncode}):\n{tail}"]
    out: dict[str, dict[str, Times]] = {s: {} for s in datasets}
    notes = []
    for line in lines:
        parts = line.split("\t")
        if parts[0] == "INFO":
            notes.append(parts[1])
        elif parts[0] == "RESULT":
            size, kind, i, s, crit, ok = parts[1:]
            t = out[size].setdefault(kind, Times())
            t.seconds[int(i)] = float(s)
            t.converged[int(i)] = ok == "1"
            t.criterion[int(i)] = float("nan") if crit == "NA" else float(crit)
    return out, notes


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", type=int, default=30, help="datasets at 2,000 rows")
    parser.add_argument("--large-datasets", type=int, default=5, help="at 100,000 rows")
    parser.add_argument("--profile-datasets", type=int, default=10, help="ran_pars_ci=profile")
    parser.add_argument("--large-profile-datasets", type=int, default=2)
    parser.add_argument("--small-preset", default="default")
    parser.add_argument("--large-preset", default="seed")
    parser.add_argument("--no-r", action="store_true", help="skip the lme4 peer")
    parser.add_argument(
        "--r-ddf-datasets", type=int, default=5, help="lmerTest Satterthwaite / KR, 2,000 rows"
    )
    parser.add_argument(
        "--r-large-ddf-datasets", type=int, default=2, help="Satterthwaite at 100,000 rows"
    )
    parser.add_argument("--r-profile-datasets", type=int, default=2, help="2,000 rows")
    parser.add_argument("--r-large-profile-datasets", type=int, default=0, help="about 65 s each")
    parser.add_argument("--blas-threads", type=int, default=1)
    args = parser.parse_args(argv)

    t_start = time.perf_counter()
    print(
        f"bench_reml: python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
        f"BLAS threads {args.blas_threads}, load avg {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    counts = {
        "small": (args.small_preset, args.datasets, args.profile_datasets),
        "large": (args.large_preset, args.large_datasets, args.large_profile_datasets),
    }
    datasets = {s: make_datasets(p, n) for s, (p, n, _) in counts.items()}
    rows = {s: f"{d[0].n_obs:,} rows" for s, d in datasets.items()}
    for s, (p, n, n_prof) in counts.items():
        print(f"  {rows[s]}: preset {p!r}, {n} datasets ({min(n_prof, n)} for profile)")
    engines = {
        o: RemlEngine(RemlOptions(method="reml", ci=o[0], ran_pars_ci=o[1])) for o in OPTIONS
    }
    ours: dict[str, dict[str, Times]] = {}
    with threadpool_limits(limits=args.blas_threads, user_api="blas"):
        for s, sets in datasets.items():
            t0 = time.perf_counter()
            ours[s] = measure(sets, counts[s][2], engines)
            print(f"  ours at {rows[s]}: {time.perf_counter() - t0:.1f} s", flush=True)

    r_times: dict[str, dict[str, Times]] = {}
    r_notes: list[str] = []
    if not args.no_r:
        t0 = time.perf_counter()
        plan = {
            "small": (args.r_ddf_datasets, args.r_ddf_datasets, args.r_profile_datasets),
            "large": (args.r_large_ddf_datasets, 0, args.r_large_profile_datasets),
        }
        r_times, r_notes = run_r(datasets, plan)
        print(f"  lme4 (one Rscript): {time.perf_counter() - t0:.1f} s", flush=True)

    # -- the table ---------------------------------------------------------------------
    base = {s: ours[s][BASELINE] for s in SIZES}
    head = "".join(f" | {rows[s] + ': median s':>22} {'x base':>7} {'conv':>7}" for s in SIZES)
    print(f"\n{'configuration':<44}{head}")
    print("-" * (44 + 2 * 40))

    def row(name: str, per_size: dict[str, Times | None]) -> None:
        cells = ""
        for s in SIZES:
            t = per_size.get(s)
            if t is None or not t.seconds:
                cells += f" | {'-':>22} {'':>7} {'':>7}"
                continue
            keys = sorted(t.seconds)
            ratio = t.median(keys) / base[s].median(keys)
            conv = f"{sum(t.converged[k] for k in keys)}/{len(keys)}"
            cells += f" | {t.median(keys):22.4f} {ratio:6.2f}x {conv:>7}"
        print(f"{name:<44}{cells}")

    row(BASELINE, {s: base[s] for s in SIZES})
    for option in OPTIONS:
        row(label(option), {s: ours[s][label(option)] for s in SIZES})
    if r_times:
        for kind, name, _ in R_KINDS:
            row(name, {s: r_times.get(s, {}).get(kind) for s in SIZES})
    print(
        "(x base: the median over the datasets that configuration was run on, divided by "
        "the baseline's median over the same datasets)"
    )

    # -- lme4 ----------------------------------------------------------------------------
    print("\nlme4 peer:")
    for note in r_notes:
        print(f"  {note}")
    if r_times:
        have = {kind for per in r_times.values() for kind in per}
        for kind, name, _ in R_KINDS:
            if kind not in have:
                print(f"  {name}: not available (package not installed) or not run")
        print("  ours / lme4, median over the same datasets:")
        for kind, name, option in R_KINDS:
            for s in SIZES:
                theirs = r_times.get(s, {}).get(kind)
                mine = ours[s][label(option)]
                keys = sorted(set(theirs.seconds) & set(mine.seconds)) if theirs else []
                if keys and theirs is not None:
                    ratio = mine.median(keys) / theirs.median(keys)
                    print(
                        f"    {label(option):<40} vs {name:<40} {rows[s]:>14} "
                        f"(n={len(keys):2d}): {mine.median(keys):8.4f} / "
                        f"{theirs.median(keys):8.4f} s = {ratio:5.2f}"
                    )
        print(f"  REML criterion, ours (default) - lme4 (should be <= {CRIT_TOL:g}):")
        for s in SIZES:
            lmer = r_times.get(s, {}).get("lmer")
            if lmer is None:
                continue
            mine = ours[s][label(DEFAULT)]
            keys = sorted(k for k in set(lmer.criterion) & set(mine.criterion))
            diff = np.array([mine.criterion[k] - lmer.criterion[k] for k in keys])
            ok = "met" if np.nanmax(diff) <= CRIT_TOL else "MISSED"
            print(
                f"    {rows[s]:>14}: n={len(keys)}, max {np.nanmax(diff):+.3e}, "
                f"min {np.nanmin(diff):+.3e}, max |.| {np.nanmax(np.abs(diff)):.3e}  {ok}"
            )
    print("  baseline (statsmodels L-BFGS stop) - ours, REML criterion:")
    for s in SIZES:
        mine = ours[s][label(DEFAULT)]
        diff = np.array([base[s].criterion[k] - mine.criterion[k] for k in sorted(mine.criterion)])
        print(f"    {rows[s]:>14}: max {diff.max():.3e}, median {np.median(diff):.3e}")

    # -- issue 12's targets ----------------------------------------------------------------
    small = ours["small"]
    b_med = base["small"].median()
    print(
        f"\nprojected 1000-replicate REML time at {rows['small']} (fit seconds on one core; "
        f"target: within {STUDY_BOUND:g}x of the baseline):"
    )
    print(f"  {'configuration':<44} {'median x 1000':>14} {'mean x 1000':>12} {'x base':>7}")
    print(f"  {BASELINE:<44} {1000 * b_med:13.1f}s {1000 * base['small'].mean():11.1f}s")
    within: dict[str, float] = {}
    for option in OPTIONS:
        t = small[label(option)]
        keys = sorted(t.seconds)
        ratio = t.median(keys) / base["small"].median(keys)
        verdict = "within 2x" if ratio <= STUDY_BOUND else "OVER 2x"
        print(
            f"  {label(option):<44} {1000 * t.median():13.1f}s {1000 * t.mean():11.1f}s "
            f"{ratio:6.2f}x  {verdict}"
        )
        if option[0] == "wald":
            within[option[1]] = ratio
    ok_ran = [k for k, r in within.items() if r <= STUDY_BOUND]
    over_ran = [k for k, r in within.items() if r > STUDY_BOUND]
    print(
        f"  ran_pars_ci (with ci=wald) within {STUDY_BOUND:g}x: "
        + (", ".join(f"{k} ({within[k]:.2f}x)" for k in ok_ran) or "none of them")
        + "; over: "
        + (", ".join(f"{k} ({within[k]:.2f}x)" for k in over_ran) or "none")
    )
    print("\ndefault fit (ci=wald, ran_pars_ci=wald) vs the baseline median fit time:")
    for s in SIZES:
        d = ours[s][label(DEFAULT)]
        ratio = d.median() / base[s].median()
        cpu = float(np.median(list(d.cpu.values())) / np.median(list(base[s].cpu.values())))
        verdict = "met" if ratio <= FIT_BOUND else "MISSED"
        print(
            f"  {rows[s]:>14}: {d.median():.4f} s / {base[s].median():.4f} s = {ratio:.2f}x "
            f"(<= {FIT_BOUND:g}x: {verdict}); median CPU-time ratio {cpu:.2f}x"
        )
    print(f"\ntotal {time.perf_counter() - t_start:.0f} s; load avg now {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
