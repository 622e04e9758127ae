"""The README's worked sample-size search, timed: clusters of 30 for 80% power to detect
0.3 at ICC 0.1 with the Kenward-Roger test only (issue 26: an answer within +-2
clusters in at most 10 minutes on 2 cores).

    .venv/bin/python benchmarks/bench_search.py [--workers 2] [--out DIR]

Prints the search's own report (rounds, answer, interval, confirmation), its wall
time, the fits it made, the seconds spent inside the fits (the rest: generating data,
starting workers, writing checkpoints), and the analytic answer (the noncentral t with
K - 2 df) beside the search's.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy import stats

from study.run.executors import make_executor
from study.usecases.searching import search


def analytic(target: float = 0.8, m: int = 30, icc: float = 0.1, delta: float = 0.3) -> int:
    """The smallest even K whose noncentral-t power reaches ``target``."""
    sb2 = icc / (1 - icc)
    for K in range(4, 1000, 2):
        ncp = delta / np.sqrt(4 * (sb2 + 1 / m) / K)
        crit = stats.t.ppf(0.975, K - 2)
        if stats.nct.sf(crit, K - 2, ncp) + stats.nct.cdf(-crit, K - 2, ncp) >= target:
            return K
    raise AssertionError("no K up to 1000")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp()) / "search"
    t0 = time.perf_counter()
    result = search(
        "cluster-power",
        "groups",
        test="reml/kenward-roger",
        low=4,
        high=200,
        out=out,
        executor=make_executor(args.workers, None, None),
        say=print,
    )
    wall = time.perf_counter() - t0
    print(result.text())
    truth = analytic()
    print(f"analytic answer (noncentral t, K - 2 df): {truth}")
    print(
        f"wall {wall:.1f} s on {args.workers} workers; {result.fits} fits; "
        f"{result.fit_seconds:.1f} s inside fits ({result.fit_seconds / args.workers / wall:.0%} "
        f"of the workers' time); answer - analytic = {result.answer - truth}"
    )


if __name__ == "__main__":
    main()
