"""How good is the up-front memory and disk estimate of ``study run``?

For a study of N (condition, replicate) pairs the runner refuses to start when
``study.run.budget.estimate`` exceeds the memory available or the free disk.  This
script fills a run directory with N pairs of synthetic results (the real schema:
pieces of 1,000 pairs, every fit given a message of ``--message-chars`` characters,
the widest the estimate assumes by default), then merges them as a finished run does
(``finish_run``: consolidate the pieces, build the Dataset, write results.nc) in a
fresh process, and prints, per N:

* the estimate's memory and disk;
* the merge's peak memory above the process's baseline (``ru_maxrss`` after minus
  before), and the disk the run directory uses at the end (pieces + results.nc);
* the ratios measured / estimated (the estimate should be above, not far above).

Usage::

    .venv/bin/python benchmarks/bench_budget.py                  # 20,000 and 100,000 pairs
    .venv/bin/python benchmarks/bench_budget.py --pairs 50000 --message-chars 0
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import json, resource, sys
import numpy as np
from study.design.config import load_config
from study.run.budget import estimate
from study.run.results import run_context
from study.run.runner import finish_run, open_run
from study.run.store import Piece, Store
from study.run.integrity import stamp_of
from study.schema import DTYPES, FIT_VARS, TERM_VARS

pairs, chars, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
config = load_config("default").with_replicates(pairs)
store = Store(out)
manifest = open_run(config, store)
truths = run_context(config)
E = len(config.engines)
T = len(config.terms()[0])
rng = np.random.default_rng(1)
cid = config.conditions[0].id
for start in range(0, pairs, 1000):
    n = min(1000, pairs - start)
    values = {}
    for var in TERM_VARS:
        values[var] = rng.normal(size=(n, E, T))
    for var in FIT_VARS:
        dt = DTYPES[var]
        if dt is np.str_:
            width = chars if var == "message" else 12
            values[var] = np.full((n, E), "m" * width, dtype=f"<U{max(width, 1)}")
        elif dt is bool:
            values[var] = np.ones((n, E), dtype=bool)
        else:
            values[var] = rng.normal(size=(n, E))
    piece = Piece(np.full(n, cid), np.arange(start, start + n), values, stamp_of(config))
    store.write_piece(piece)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
finish_run(config, store, manifest, truths)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
disk = sum(p.stat().st_size for p in Path(out).rglob("*") if p.is_file())
need = estimate(config)
print(json.dumps({"pairs": pairs, "est_memory": need.memory, "est_disk": need.disk,
                  "merge_memory": after - before, "disk": disk}))
""".replace("from study.run.integrity", "from pathlib import Path\nfrom study.run.integrity")


def measure(pairs: int, chars: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        done = subprocess.run(
            [sys.executable, "-c", CHILD, str(pairs), str(chars), str(Path(tmp) / "run")],
            capture_output=True,
            text=True,
            check=True,
        )
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, nargs="+", default=[20_000, 100_000])
    parser.add_argument("--message-chars", type=int, default=200)
    args = parser.parse_args()
    print(f"default preset (2 engines x 6 terms), messages of {args.message_chars} characters")
    print(
        f"{'pairs':>9} | {'est. memory':>11} {'merge peak':>11} {'ratio':>6} | "
        f"{'est. disk':>10} {'disk used':>10} {'ratio':>6}"
    )
    for n in args.pairs:
        m = measure(n, args.message_chars)
        print(
            f"{n:>9,} | {m['est_memory'] / 1e6:>8.1f} MB {m['merge_memory'] / 1e6:>8.1f} MB "
            f"{m['merge_memory'] / m['est_memory']:>6.2f} | {m['est_disk'] / 1e6:>7.1f} MB "
            f"{m['disk'] / 1e6:>7.1f} MB {m['disk'] / m['est_disk']:>6.2f}"
        )


if __name__ == "__main__":
    main()
