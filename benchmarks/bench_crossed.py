"""Benchmark: REML fits of crossed random effects against lme4 (issue 27).

Data: ``--datasets`` replicates of each of two crossed designs, every subject seeing
every item, ``cond`` = +-0.5 counterbalanced (Latin square: ``(subject + item) mod 2``),
random intercepts and ``cond`` slopes by subject (SDs 0.6, 0.3, correlation 0.3) and by
item (0.4, 0.2, correlation 0.2), ``sigma = 1``, ``beta = (0, 0.3)``: 30 subjects x 20
items (600 rows, L = 100 random-effect levels) and 60 x 40 (2,400 rows, L = 200).  The
model fitted is the maximal one, ``y ~ cond + (1 + cond | subj) + (1 + cond | item)``.

Measured side by side in one run, on the same datasets (written to a CSV per size):

* ours: ``RemlEngine().fit`` (Wald intervals and Wald variance-parameter SEs, the
  default) on ``models.formula.model_data`` of the data frame, one BLAS thread (as
  every fit of a study runs), after one untimed warm-up fit; the time includes building
  the data (formula, sparse Z, cross-products) from the frame, as lme4's includes its
  model frame;
* lme4 1.1-31 (R from Debian's packages, a benchmark peer only): one Rscript process
  reads the same CSVs and times (``proc.time`` elapsed) ``lmer(y ~ cond + (1 + cond |
  subj) + (1 + cond | item))`` on each dataset after one warm-up fit.

Printed per size: the median seconds per fit of each, their ratio (ours / lme4; below 1
is faster), and the largest |REML criterion difference| ours - lme4 (negative: ours is
lower, lme4's bobyqa stopped short).  Nothing is asserted (the machine may be shared):
read the ratio, measured in one run.

Usage::

    .venv/bin/python benchmarks/bench_crossed.py              # about 30 s
    .venv/bin/python benchmarks/bench_crossed.py --datasets 20
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import numpy as np
import pandas as pd

from models.formula import model_data
from models.reml import RemlEngine

FORMULA = "y ~ cond + (1 + cond | subj) + (1 + cond | item)"
SIZES = {"30x20": (30, 20), "60x40": (60, 40)}
R_SCRIPT = r"""
suppressPackageStartupMessages(library(lme4))
args <- commandArgs(trailingOnly = TRUE)
cat("INFO\tlme4", as.character(packageVersion("lme4")), "\n")
for (k in seq(1, length(args), by = 2)) {
  size <- args[k]; d <- read.csv(args[k + 1])
  d$subj <- factor(d$subj); d$item <- factor(d$item)
  sets <- split(d, d$dataset)
  invisible(lmer(y ~ cond + (1 + cond | subj) + (1 + cond | item), sets[[1]]))
  for (i in seq_along(sets)) {
    t0 <- proc.time()[["elapsed"]]
    m <- suppressMessages(lmer(y ~ cond + (1 + cond | subj) + (1 + cond | item), sets[[i]]))
    t1 <- proc.time()[["elapsed"]]
    cat(sprintf("RESULT\t%s\t%d\t%.6f\t%.10f\n", size, i - 1, t1 - t0, REMLcrit(m)))
  }
}
cat("DONE\n")
"""


def dataset(subjects: int, items: int, rng: np.random.Generator) -> pd.DataFrame:
    s = np.repeat(np.arange(subjects), items)
    i = np.tile(np.arange(items), subjects)
    cond = np.where((s + i) % 2 == 0, -0.5, 0.5)
    cov_s = np.array([[0.36, 0.3 * 0.6 * 0.3], [0.3 * 0.6 * 0.3, 0.09]])
    cov_i = np.array([[0.16, 0.2 * 0.4 * 0.2], [0.2 * 0.4 * 0.2, 0.04]])
    us = rng.multivariate_normal(np.zeros(2), cov_s, subjects)
    ui = rng.multivariate_normal(np.zeros(2), cov_i, items)
    y = (
        0.3 * cond
        + us[s, 0]
        + us[s, 1] * cond
        + ui[i, 0]
        + ui[i, 1] * cond
        + rng.standard_normal(s.size)
    )
    return pd.DataFrame(
        {"subj": [f"s{k:03d}" for k in s], "item": [f"i{k:03d}" for k in i], "cond": cond, "y": y}
    )


def ours(frames: list[pd.DataFrame]) -> tuple[list[float], list[float]]:
    engine = RemlEngine()
    engine.fit(model_data(frames[0], FORMULA)[0])
    seconds, crit = [], []
    for frame in frames:
        t0 = time.perf_counter()
        data = model_data(frame, FORMULA)[0]
        fit = engine.fit(data)
        seconds.append(time.perf_counter() - t0)
        crit.append(fit.criterion if fit.converged else float("nan"))
    return seconds, crit


def lme4(sets: dict[str, list[pd.DataFrame]]) -> tuple[dict[str, dict[int, tuple]], str]:
    rscript = shutil.which("Rscript")
    if rscript is None:
        return {}, "Rscript is not on PATH: no lme4 figures"
    with tempfile.TemporaryDirectory(prefix="bench-crossed-") as tmp:
        args = []
        for size, frames in sets.items():
            path = Path(tmp) / f"{size}.csv"
            pd.concat(f.assign(dataset=i) for i, f in enumerate(frames)).to_csv(
                path, index=False, float_format="%.17g"
            )
            args += [size, str(path)]
        script = Path(tmp) / "bench.R"
        script.write_text(R_SCRIPT)
        proc = subprocess.run(
            [rscript, "--vanilla", str(script), *args], capture_output=True, text=True
        )
    if "DONE" not in proc.stdout:
        return {}, f"Rscript failed: {proc.stderr.strip().splitlines()[-1:]}"
    out: dict[str, dict[int, tuple]] = {s: {} for s in sets}
    info = ""
    for line in proc.stdout.splitlines():
        parts = line.split("\t")
        if parts[0] == "INFO":
            info = parts[1].strip()
        elif parts[0] == "RESULT":
            out[parts[1]][int(parts[2])] = (float(parts[3]), float(parts[4]))
    return out, info


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", type=int, default=10)
    ap.add_argument("--seed", type=int, default=20261202)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    sets = {k: [dataset(*v, rng) for _ in range(args.datasets)] for k, v in SIZES.items()}
    mine = {k: ours(frames) for k, frames in sets.items()}
    theirs, info = lme4(sets)
    print(f"{args.datasets} datasets per size; {FORMULA}; ours: one BLAS thread; {info}")
    print(f"{'size':>6}  {'ours (s)':>9}  {'lme4 (s)':>9}  {'ours/lme4':>9}  {'max crit diff':>13}")
    for size in sets:
        sec, crit = mine[size]
        row = f"{size:>6}  {np.median(sec):9.4f}"
        if theirs.get(size):
            r_sec = [theirs[size][i][0] for i in range(len(sec))]
            diff = [crit[i] - theirs[size][i][1] for i in range(len(sec))]
            worst = max(diff, key=abs)
            row += f"  {np.median(r_sec):9.4f}  {np.median(sec) / np.median(r_sec):9.2f}"
            row += f"  {worst:13.2e}"
        print(row)


if __name__ == "__main__":
    main()
