"""A kind of study defined outside the package (for the tests of the kind-free runner):
the mean and SD of each replicate's response, no fit."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from study.run.kinds import PairOutput
from study.run.store import Layout
from study.schema import Schema, Var

TOY_TOML = """
name = "toy-kind"
seed = 11
replicates = 4
[design]
groups = 5
group_size = 4
[engines]
run = ["reml"]
"""


class MeanOfY:
    """A kind that fits nothing: the mean and the SD of each replicate's response."""

    name = "mean-of-y"
    layout = Layout(
        "means.nc",
        Schema(
            "replicate",
            {
                "mean_y": Var((), float, "mean of the response"),
                "sd_y": Var((), float, "SD of the response"),
                "n": Var((), np.int64, "rows", -1),
            },
            converged=None,
        ),
        "study run",
        "--replicates",
    )
    what = "a toy kind"

    def claims(self, config: Any) -> bool:
        return config.name == "toy-kind"

    def recognises(self, path: Path) -> bool:
        return (path / "means.nc").is_file()

    def default_out(self, config: Any) -> Path:
        return Path("outputs") / "toy" / config.name

    def terms(self, config: Any) -> tuple[list[str], list[str]]:
        return config.terms()

    def context(self, config: Any, design_of: Any) -> None:
        return None

    def run_pair(
        self, config: Any, design: Any, engines: Sequence[Any], replicate: int, fail_fast: bool
    ) -> PairOutput:
        y = design.sample(replicate).data.y
        return PairOutput(
            {"mean_y": np.array(y.mean()), "sd_y": np.array(y.std()), "n": np.array(y.size)}
        )

    def axes(self, config: Any) -> dict[str, int]:
        return {}

    def coords(self, config: Any, context: Any) -> dict[str, Any]:
        return {}

    def attrs(self, config: Any, manifest: Mapping[str, Any]) -> dict[str, Any]:
        return {"toy": "yes"}
