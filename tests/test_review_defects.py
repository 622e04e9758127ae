"""The defects a review found (architecture issue), one test or more each.

Each test names its defect number; each failed before the fix (a traceback, a silent
wrong result, or a missing piece) and passes now.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from models.base import DIAGNOSTIC_FIELDS, FIT_FIELDS, TERM_FIELDS, FitResult
from models.bayes import BayesEngine, BayesOptions
from models.data import LMMData
from models.reml import RemlOptions
from models.reml.engine import RemlEngine
from models.validate import OptionError
from study.cli.main import main
from study.design.config import MAX_REPLICATES, config_from_dict, load_config
from study.design.generate import Design
from study.design.seeds import engine_seed
from study.errors import ConfigError, StoreError
from study.run import batch, runner
from study.run.batch import BatchResult
from study.run.kinds import PairOutput, piece_of
from study.run.kinds.coverage import COVERAGE
from study.run.results import open_results
from study.run.store import Piece, Store
from study.schema import PIECE_VARS, TERM_COORDS, TERM_VARS

ROOT = Path(__file__).resolve().parents[1]

SMALL = """
name = "small"
replicates = 3
seed = 11

[design]
groups = 8
group_size = 10
beta = [1.0, 0.5]
re_sd = [0.8, 0.4]
re_cor = [[1.0, 0.2], [0.2, 1.0]]

[engines]
run = ["reml"]
"""


@pytest.fixture
def small_toml(tmp_path: Path) -> Path:
    path = tmp_path / "small.toml"
    path.write_text(SMALL)
    return path


def _one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and "Traceback" not in err, (out, err)
    return err


def _tree(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in path.rglob("*") if p.is_file()}


# -- 1. resume with another engine list; the hash covers everything that matters ----------
def test_1_resume_with_other_engines_is_refused_not_a_crash(small_toml, tmp_path, capsys):
    out = tmp_path / "R"
    args = ["run", str(small_toml), "--out", str(out), "--workers", "1"]
    assert main([*args, "--replicates", "2", "--engines", "reml"]) == 0
    capsys.readouterr()
    before = _tree(out)
    assert main([*args, "--replicates", "3", "--engines", "bayes,reml"]) == 2
    err = _one_line_error(capsys)
    assert "different configuration" in err and "engines.run: ['reml'] -> ['bayes', 'reml']" in err
    assert "--overwrite" in err
    assert _tree(out) == before  # nothing written, nothing lost


def test_1_hash_distinguishes_engine_lists_and_follows_every_setting():
    base = config_from_dict({}, default_name="x")
    hashes = {
        base.with_engines(e).hash() for e in (("reml",), ("reml", "bayes"), ("bayes", "reml"))
    }
    assert len(hashes) == 3
    # derived from the config: a default written out explicitly changes nothing ...
    explicit = config_from_dict({"engines": {"bayes": {"chains": 4}}}, default_name="x")
    assert explicit.hash() == base.hash()
    # ... and any setting that changes results changes it, the others do not
    for table in (
        {"engines": {"bayes": {"ess_floor": 100}}},
        {"engines": {"reml": {"optimizers": ["bfgs"]}}},
        {"engines": {"bayes": {"priors": {"lkj_eta": 1.0}}}},
        {"design": {"predictor": {"high": 30.0}}},
        {"design": {"repeats": 2}},
        {"seed": 1},
        {"level": 0.9},
    ):
        assert config_from_dict(table, default_name="x").hash() != base.hash(), table
    for table in ({"name": "other"}, {"replicates": 7}, {"keep_draws": 0}):
        assert config_from_dict(table, default_name="x").hash() == base.hash(), table


def test_1_pieces_of_different_engine_counts_are_a_store_error(tmp_path):
    store = Store(tmp_path)
    kinds = {"b": np.ones((1, 1), bool), "f": np.zeros((1, 1)), "U": np.array([[""]])}
    one = {v: np.zeros((1, 1, 6)) for v in TERM_VARS} | {
        name: kinds[kind] for name, (kind, _) in FIT_FIELDS.items()
    }
    two = {k: np.concatenate([v, v], axis=1) for k, v in one.items()}
    store.write_piece(Piece(np.array(["c"]), np.array([0]), one))
    store.write_piece(Piece(np.array(["c"]), np.array([1]), two))
    with pytest.raises(StoreError, match="different shapes"):
        store.load()


# -- 2. one seed policy; engines keyed by name ---------------------------------------------
class _Recorder:
    def __init__(self, name: str, seen: dict[str, int]) -> None:
        self.name, self.seen = name, seen

    def fit(self, data: LMMData, *, seed: int | None = None, keep_posterior: bool = False):
        assert seed is not None
        self.seen[self.name] = seed
        return FitResult.failed(data.predictors, "recorded")


def test_2_engine_seeds_do_not_depend_on_the_engine_order(default_config):
    design = Design.from_study(default_config)
    seen: list[dict[str, int]] = []
    for order in (("reml", "bayes"), ("bayes", "reml"), ("bayes",)):
        cfg = default_config.with_engines(order)
        record: dict[str, int] = {}
        COVERAGE.run_pair(cfg, design, [_Recorder(n, record) for n in order], 4, False)
        seen.append(record)
    assert seen[0] == seen[1] and seen[2]["bayes"] == seen[0]["bayes"]
    assert seen[0]["bayes"] == engine_seed(default_config.seed, design.id, 4, "bayes")
    assert seen[0]["bayes"] != seen[0]["reml"]


def test_2_every_stream_is_keyed_in_the_seed_module():
    generate = (ROOT / "study/design/generate.py").read_text()
    assert "SeedSequence" not in generate and "default_rng" not in generate
    sources = [p for p in (ROOT / "study").rglob("*.py") if p.name != "seeds.py"]
    assert not [p for p in sources if "spawn_key" in p.read_text()]


# -- 3. study fit on a CSV with a header and no rows ----------------------------------------
def test_3_fit_header_only_csv(tmp_path, capsys):
    csv = tmp_path / "empty.csv"
    csv.write_text("Reaction,Days,Subject\n")
    assert main(["fit", str(csv), "--y", "Reaction", "--x", "Days", "--group", "Subject"]) == 2
    assert "header but no data rows" in _one_line_error(capsys)


# -- 4. a bounded replicate count, never a list of every index -------------------------------
def test_4_huge_replicate_count_is_refused_before_anything_is_written(tmp_path, capsys):
    out = tmp_path / "R"
    with pytest.raises(SystemExit) as exc:
        main(["run", "default", "--replicates", "1000000000000", "--out", str(out)])
    assert exc.value.code == 2
    assert f"from 1 to {MAX_REPLICATES:,}" in capsys.readouterr().err
    cfg = tmp_path / "huge.toml"
    cfg.write_text(SMALL.replace("replicates = 3", "replicates = 1000000000000"))
    assert main(["run", str(cfg), "--out", str(out)]) == 2
    assert "replicates = 1000000000000: must be <= 1,000,000" in _one_line_error(capsys)
    assert not out.exists()


def test_4_runner_walks_the_replicates_lazily(small_toml, tmp_path, monkeypatch):
    """run_study never builds a per-replicate list: it asks for indices one at a time."""
    cfg = load_config(small_toml).with_replicates(MAX_REPLICATES)
    fitted: list[tuple[str, int]] = []

    class Fake:  # an executor that fails nothing but counts what it is given
        workers, batch_size, fits_here = 2, 1, False

        def map(self, config, work, fail_fast=False, size=None):
            for pairs in work:
                fitted.extend(pairs)
                if len(fitted) == 3:
                    raise KeyboardInterrupt  # stop after three: the rest never materialised
                fits = [FitResult.failed(("X",), "fake")]
                values = {v: np.array([getattr(f, v) for f in fits]) for v in PIECE_VARS}
                yield BatchResult(piece_of(COVERAGE.layout, pairs, [PairOutput(values)]))

        def close(self, *, cancel=False):
            pass

    with pytest.raises(KeyboardInterrupt):
        runner.run_study(cfg, tmp_path / "R", executor=Fake())
    assert [r for _, r in fitted] == [0, 1, 2]


# -- 5. failing fits exit 1; Bayes refuses a rank-deficient design --------------------------
def _constant_predictor() -> LMMData:
    rng = np.random.default_rng(5)
    group = np.repeat(np.arange(6), 8)
    X = np.column_stack([np.ones(48), np.full(48, 3.0)])
    return LMMData(rng.normal(size=48), X, group, ("x",))


def test_5_fit_failure_exits_1_with_the_reason(tmp_path, capsys, monkeypatch):
    """Data no fit can use are refused up front (exit 2); a fit that runs and fails
    exits 1 with its reason."""
    data = _constant_predictor()
    csv = tmp_path / "const.csv"
    data.to_frame().to_csv(csv, index=False)
    assert main(["fit", str(csv), "--y", "y", "--x", "x", "--group", "group"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and "column 'x' is constant" in err
    good = tmp_path / "good.csv"
    sleep = pd.read_csv(Path(__file__).parent / "data" / "sleepstudy.csv")
    sleep.to_csv(good, index=False)

    def fail(self, data):
        raise np.linalg.LinAlgError("Singular matrix")

    monkeypatch.setattr(RemlEngine, "_fit", fail)
    argv = ["fit", str(good), "--y", "Reaction", "--x", "Days", "--group", "Subject"]
    assert main(argv) == 1
    out, err = capsys.readouterr()
    assert out == "" and err == "study: fit failed: LinAlgError: Singular matrix\n"


def test_5_bayes_refuses_rank_deficient_design_like_reml():
    fit = BayesEngine(BayesOptions(draws=20, tune=20)).fit(_constant_predictor(), seed=1)
    assert not fit.converged and "rank deficient" in fit.message
    assert np.isnan(fit.estimate).all() and "sampling_seconds" not in fit.extra


# -- 6. engine options typed once, at config load ------------------------------------------
def test_6_engine_options_are_typed_at_load_and_checked_against_the_design():
    cfg = config_from_dict({"engines": {"reml": {"ci": "t"}}}, default_name="x")
    assert isinstance(cfg.engine_options["reml"], RemlOptions)
    assert cfg.engine_options["reml"].ci == "t"
    assert isinstance(cfg.engine_options["bayes"], BayesOptions)
    bad = {"engines": {"bayes": {"priors": {"fixed_scale": [1.0, 2.0, 3.0]}}}}
    with pytest.raises(ConfigError, match=r"engines.bayes.priors.fixed_scale = \[1.0, 2.0, 3.0\]"):
        config_from_dict(bad, default_name="x")
    # built once per process: the same options object gives the same engine
    again = config_from_dict({"engines": {"reml": {"ci": "t"}}}, default_name="y")
    assert batch.PROCESS.engine(cfg, "reml") is batch.PROCESS.engine(again, "reml")


# -- 7. one validation style -----------------------------------------------------------------
STYLE = re.compile(r"^[\w.\[\]]+ = .+: (must|has) ")


@pytest.mark.parametrize(
    "make",
    [
        lambda: config_from_dict({"design": {"sigma": -1}}, default_name="x"),
        lambda: config_from_dict({"design": {"groups": 1.5}}, default_name="x"),
        lambda: config_from_dict({"level": 2}, default_name="x"),
        lambda: config_from_dict({"engines": {"reml": {"ci": "z"}}}, default_name="x"),
        lambda: config_from_dict({"engines": {"bayes": {"chains": 0}}}, default_name="x"),
        lambda: config_from_dict(
            {"engines": {"bayes": {"priors": {"sd_df": -1}}}}, default_name="x"
        ),
        lambda: RemlOptions(maxiter=0),
        lambda: RemlOptions(level="0.95"),
        lambda: BayesOptions(draws=2),
        lambda: BayesOptions(sampler="stan"),
    ],
)
def test_7_every_setting_error_reads_key_value_rule(make):
    with pytest.raises(ValueError) as exc:
        make()
    assert isinstance(exc.value, OptionError | ConfigError)
    assert STYLE.match(str(exc.value)), str(exc.value)


# -- 8. the results schema, defined once -----------------------------------------------------
def test_8_schema_is_what_engines_store_and_datasets_hold(small_toml, tmp_path):
    assert set(TERM_VARS) == set(TERM_FIELDS) | set(DIAGNOSTIC_FIELDS)
    assert set(PIECE_VARS) == set(TERM_VARS) | set(FIT_FIELDS)
    fit = FitResult.failed(("X",), "x")
    assert all(hasattr(fit, v) for v in PIECE_VARS)
    runner.run_study(load_config(small_toml).with_replicates(2), tmp_path / "R")
    ds = open_results(tmp_path / "R")
    assert set(ds.data_vars) == {*PIECE_VARS, "done"}
    assert set(TERM_COORDS) <= set(ds.coords)
    with np.load(next((tmp_path / "R" / "checkpoints").iterdir())) as npz:
        assert set(npz.files) == {*PIECE_VARS, "condition", "replicate", "stamp"}
    # a results.nc that lacks a schema variable is named as such
    bare = tmp_path / "bare"
    bare.mkdir()
    ds.drop_vars("ess_tail").to_netcdf(bare / "results.nc", engine="h5netcdf")
    with pytest.raises(StoreError, match="lacks ess_tail"):
        open_results(bare)


# -- 10. tomli-w, no dead code -----------------------------------------------------------------
def test_10_config_round_trips_through_tomli_w(write_config):
    table = {
        "replicates": 12,
        "design": {
            "groups": 3,
            "group_size": [2, 3, 4],
            "predictors": ["A", "B"],
            "beta": [1.0, 2.0, 3.0],
            "re_sd": [1.0, 0.5, 0.2],
            "re_cor": [[1.0, 0.1, 0.0], [0.1, 1.0, 0.0], [0.0, 0.0, 1.0]],
            "predictor": {"distribution": "normal", "sd": 2.0},
        },
        "engines": {
            "run": ["bayes", "reml"],
            "bayes": {"priors": {"sd_scale": [1.0, 2.0, 3.0]}},
            "reml": {"optimizers": ["bfgs", "powell"]},
        },
    }
    cfg = config_from_dict(table, default_name="rt")
    text = cfg.to_toml()
    assert tomllib.loads(text)["engines"]["run"] == ["bayes", "reml"]
    again = load_config(write_config(text, "rt.toml"))
    assert again == cfg and again.hash() == cfg.hash()
    assert not (ROOT / "study" / "tomlwrite.py").exists()
    import models.bayes.graph as graph
    import study.analysis.mcse as mcse

    assert not hasattr(graph, "placeholder_stats") and not hasattr(mcse, "ratio_to_truth")


# -- 11. design notes live in the repository ------------------------------------------------------
def test_11_docstrings_point_to_docs_in_the_repo():
    arch = ROOT / "docs" / "architecture.md"
    assert arch.is_file()
    text = arch.read_text()
    for topic in ("seed", "schema", "sufficient statistics", "study/design", "models/bayes"):
        assert topic in text, topic
    code = [
        *ROOT.glob("study/**/*.py"),
        *ROOT.glob("models/**/*.py"),
        *ROOT.glob("benchmarks/*.py"),
    ]
    assert not [str(p) for p in code if "design.md" in p.read_text()]


# -- 12. config traps met by following the README ----------------------------------------------
@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ('engines = ["reml"]\n[engines.bayes]\nchains = 2\n', r"not valid TOML .*run = \["),
        (
            'engines = ["reml"]\n',
            r"engines = \['reml'\]: must be a table, not a list; .*\[engines\]",
        ),
        ("[engines]\nrun = ['reml']\n[engines.bayes]\nchains = 2\n", r"add it to engines.run"),
        ("colour = 1\n", r"allowed keys: conditions, design, engines, keep_draws"),
        (
            "[engines]\nrnu = ['reml']\n",
            r"unknown key engines.rnu \(did you mean run\?\); allowed keys in \[engines\]",
        ),
    ],
)
def test_12_engine_traps_get_a_fix(text, pattern, write_config, capsys):
    path = write_config(text)
    assert main(["truth", str(path)]) == 2
    assert re.search(pattern, _one_line_error(capsys))


def test_12_an_options_table_does_not_drop_the_other_engine():
    cfg = config_from_dict({"engines": {"reml": {"ci": "t"}}}, default_name="x")
    assert cfg.engines == ("reml", "bayes")


# -- 13. --reference must be in the run; files follow the umask --------------------------------
def test_13_unknown_reference_refused_and_files_follow_umask(small_toml, tmp_path, capsys):
    out = tmp_path / "R"
    old = os.umask(0o027)
    try:
        assert (
            main(["run", str(small_toml), "--out", str(out), "--replicates", "2", "--workers", "1"])
            == 0
        )
        assert main(["summarize", str(out)]) == 0
    finally:
        os.umask(old)
    capsys.readouterr()
    files = [p for p in out.rglob("*") if p.is_file()]
    assert {p.name for p in files} >= {"results.nc", "summary.nc", "manifest.json", "study.toml"}
    assert {oct(p.stat().st_mode & 0o777) for p in files} == {oct(0o640)}
    (out / "summary.nc").unlink()
    assert main(["summarize", str(out), "--reference", "bayes"]) == 2
    assert "--reference 'bayes': not an engine of this run; choose one of reml" in _one_line_error(
        capsys
    )
    assert not (out / "summary.nc").exists()


def test_run_batch_equals_the_run(small_toml, tmp_path):
    """The unit of work: any batch of replicates, in any order, equals the full run."""
    cfg = load_config(small_toml)
    runner.run_study(cfg, tmp_path / "R")
    ds = open_results(tmp_path / "R")
    cid = cfg.conditions[0].id
    piece = batch.run_batch(cfg, [(cid, 2), (cid, 0)]).piece
    np.testing.assert_array_equal(piece.replicate, [0, 2])
    np.testing.assert_array_equal(
        piece.values["estimate"], ds.estimate.isel(condition=0).sel(replicate=[0, 2]).values
    )
