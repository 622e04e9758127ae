"""Study kinds over one runner: the runner, store and dataset builder know no kind.

A third kind, defined here and nowhere in the package, runs, resumes, extends and
opens through the same code as the coverage study and SBC (what the power kind of the
next issues will need), and the two built-in kinds are found by their config and by
their files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from toy_kind import TOY_TOML, MeanOfY

from study.design.config import config_from_text, load_config
from study.design.generate import Design
from study.design.sbc import as_sbc
from study.run import kinds as kinds_module
from study.run.batch import run_batch
from study.run.kinds import KINDS, kind_named, kind_of
from study.run.kinds.coverage import COVERAGE
from study.run.kinds.sbc import SBC
from study.run.results import open_results, store_of
from study.run.runner import run_study


@pytest.fixture
def toy(monkeypatch):
    kind = MeanOfY()
    monkeypatch.setitem(KINDS, kind.name, kind)
    return kind, config_from_text(TOY_TOML, default_name="toy", label="toy")


def test_a_third_kind_runs_resumes_and_opens_through_the_kind_free_runner(toy, tmp_path):
    kind, cfg = toy
    assert kind_of(cfg) is kind and kind_of(load_config("default")) is COVERAGE
    out = tmp_path / "run"
    report = run_study(cfg.with_replicates(2), out)
    assert report.results == out / "means.nc" and (out / "means.nc").is_file()
    run_study(cfg, out)  # extend from 2 to 4 replicates: a resume of the same kind
    ds = open_results(out)
    assert ds.attrs["kind"] == "mean-of-y" and ds.attrs["toy"] == "yes"
    assert dict(ds["mean_y"].sizes) == {"condition": 1, "replicate": 4}
    assert bool(ds["done"].all()) and ds.attrs["replicates_requested"] == 4
    design = Design.from_study(cfg)
    expected = [design.sample(r).data.y.mean() for r in range(4)]
    np.testing.assert_array_equal(ds["mean_y"].values[0], expected)
    assert (ds["n"].values == 20).all()
    # the store of the directory is found by its manifest's kind
    assert store_of(out).layout is kind.layout
    # a batch is the unit any process runs: the same values from run_batch
    again = run_batch(cfg, [(cfg.conditions[0].id, 3)])
    assert again.piece.values["mean_y"][0] == expected[3]


def test_kinds_are_named_in_manifests_and_found_from_files(tmp_path):
    assert kind_named(None) is COVERAGE and kind_named("study") is COVERAGE
    assert kind_named("sbc") is SBC
    assert kind_named("power").name == "power"
    with pytest.raises(KeyError, match="not one of coverage, sbc, power"):
        kind_named("bootstrap")
    sbc_cfg = as_sbc(load_config("default"), 3)
    assert kind_of(sbc_cfg) is SBC and SBC.default_out(sbc_cfg) == Path("outputs/sbc/default")
    (tmp_path / "sbc.nc").write_bytes(b"")
    assert kinds_module.kind_of_files(tmp_path) is SBC
    assert kinds_module.kind_of_files(tmp_path / "none") is COVERAGE


def test_no_module_outside_the_kinds_branches_on_a_kind():
    """The runner, store, executors, shards, merge, lock, integrity, results, dataset
    builder, use cases and CLI name no kind (the kinds' own modules do)."""
    import study

    root = Path(study.__file__).parent
    kind_free = [
        p
        for p in root.rglob("*.py")
        if "kinds" not in p.parts and p.name not in ("sbc.py", "schema.py")
    ]
    offenders = []
    for path in kind_free:
        text = path.read_text()
        for needle in ('kind == "sbc"', "config.sbc is", ".sbc is not None", 'kind != "sbc"'):
            if needle in text:
                offenders.append(f"{path.relative_to(root)}: {needle}")
    assert not offenders, offenders
