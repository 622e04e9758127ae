"""Time the generator: one replicate of the seed design (repeats = 50: 100,000 rows).

Run: .venv/bin/python benchmarks/bench_generate.py [--replicates 50]
"""

from __future__ import annotations

import argparse
import statistics
import time

from study.design.config import load_config
from study.design.generate import Design


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--replicates", type=int, default=50)
    args = parser.parse_args()
    for preset in ("seed", "default"):
        design = Design.from_study(load_config(preset))
        times = []
        for r in range(args.replicates):
            t0 = time.perf_counter()
            s = design.sample(r)
            times.append(time.perf_counter() - t0)
        print(
            f"{preset:8s} rows/replicate = {s.data.n_obs:7d}  "
            f"median {statistics.median(times) * 1e3:7.2f} ms"
            f"  max {max(times) * 1e3:7.2f} ms  ({args.replicates} replicates)"
        )


if __name__ == "__main__":
    main()
