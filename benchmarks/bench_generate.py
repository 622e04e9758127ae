"""Time the generator: one replicate of the seed design (repeats = 50: 100,000 rows),
the default design, and the designs of issue 25 (predictor tables, non-normal u and e,
heteroscedastic residuals, missing outcomes).

Run: .venv/bin/python benchmarks/bench_generate.py [--replicates 50] [--old]

``--old`` times only the seed and default presets (what a checkout from before issue
25 has), so that two checkouts can be run side by side.
"""

from __future__ import annotations

import argparse
import statistics
import time

from study.design.config import load_config
from study.design.generate import Design

#: (label, preset, condition index or None for the only one)
NEW = [
    ("cluster-trial K=40", "cluster-trial", 6),
    ("robustness skewed u", "robustness", 1),
    ("robustness t residuals", "robustness", 3),
    ("robustness group SDs", "robustness", 4),
]
MISSING = """
name = "missing"
[design]
groups = 40
group_size = 50
[design.missing]
mechanism = "mar"
by = "X"
intercept = -2.0
slope = 0.1
[engines]
run = ["reml"]
"""


def _time(label: str, design: Design, replicates: int) -> None:
    times = []
    for r in range(replicates):
        t0 = time.perf_counter()
        s = design.sample(r)
        times.append(time.perf_counter() - t0)
    print(
        f"{label:24s} rows/replicate = {s.data.n_obs:7d}  "
        f"median {statistics.median(times) * 1e3:7.2f} ms"
        f"  max {max(times) * 1e3:7.2f} ms  ({replicates} replicates)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--replicates", type=int, default=50)
    parser.add_argument("--old", action="store_true", help="seed and default only")
    args = parser.parse_args()
    for preset in ("seed", "default"):
        _time(preset, Design.from_study(load_config(preset)), args.replicates)
    if args.old:
        return
    from study.design.config import config_from_text

    for label, preset, index in NEW:
        config = load_config(preset)
        _time(label, Design.from_study(config, config.conditions[index]), args.replicates)
    config = config_from_text(MISSING, default_name="missing", label="missing")
    _time("default + MAR missing", Design.from_study(config), args.replicates)


if __name__ == "__main__":
    main()
