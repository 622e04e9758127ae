"""Damaged run directories: every fault is named with its file and its repair, the
finished work in the rest is kept, and a resume recomputes only what was lost.

Faults injected (one per test unless said): a truncated piece, a piece with bytes
overwritten in the middle, a piece of another configuration, a truncated results.nc,
a manifest that does not parse (with and without a usable study.toml), a missing
manifest beside checkpoints, and a full disk (ENOSPC) while writing a piece and
while writing results.nc.
"""

from __future__ import annotations

import errno
import shutil
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from helpers import comparable, file_tree, study_toml

from study.cli.main import main
from study.design.config import load_config
from study.errors import RunError, StoreError
from study.run.runner import run_study
from study.run.store import Piece, Store


def _grid(seed: int = 3) -> str:
    """Two conditions (sigma 1 and 2) of K = 6 groups of 5, 4 replicates, reml."""
    return study_toml(
        name="damage",
        replicates=4,
        seed=seed,
        design={"groups": 6, "group_size": 5, "re_cor": [[1.0, 0.1], [0.1, 1.0]]},
        conditions={"sigma": [1.0, 2.0]},
    )


def _split(store: Store) -> list[Path]:
    """Rewrite the run's pieces as one piece per (condition, replicate) pair."""
    piece = store.load()
    assert piece is not None
    files = store.piece_files()
    out = []
    for i in range(len(piece)):
        one = {k: v[i : i + 1] for k, v in piece.values.items()}
        out.append(
            store.write_piece(
                Piece(piece.condition[i : i + 1], piece.replicate[i : i + 1], one, piece.stamp)
            )
        )
    for f in files:
        f.unlink()
    return out


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[Path, Path]:
    """The config and an uninterrupted run of it."""
    tmp = tmp_path_factory.mktemp("damage")
    cfg = tmp / "grid.toml"
    cfg.write_text(_grid())
    run_study(load_config(cfg), tmp / "clean")
    return cfg, tmp / "clean"


@pytest.fixture
def split_run(reference, tmp_path) -> tuple[Path, Path, list[Path]]:
    """A copy of the reference run with one piece per pair."""
    cfg, clean = reference
    out = tmp_path / "run"
    shutil.copytree(clean, out)
    return cfg, out, _split(Store(out))


def _one_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


def _assert_resumes_to(cfg: Path, out: Path, clean: Path, refits: int, capsys) -> str:
    """`study run` on the damaged directory: refits exactly ``refits`` pairs and ends
    with the uninterrupted results."""
    before = len(Store(out).piece_files())
    report = run_study(load_config(cfg), out)
    assert report.new == refits, (report.new, refits, before)
    with xr.open_dataset(out / "results.nc") as a, xr.open_dataset(clean / "results.nc") as b:
        xr.testing.assert_identical(comparable(a.load()), comparable(b.load()))
    return capsys.readouterr().err


@pytest.mark.parametrize("fault", ["truncated", "overwritten"])
def test_a_damaged_piece_is_named_kept_aside_and_recomputed(fault, split_run, reference, capsys):
    cfg, out, pieces = split_run
    victim = pieces[3]
    data = victim.read_bytes()
    if fault == "truncated":
        victim.write_bytes(data[: len(data) // 2])
    else:
        mid = len(data) // 2
        victim.write_bytes(data[:mid] + b"\xff" * 64 + data[mid + 64 :])
    damaged = victim.read_bytes()
    tree = file_tree(out)
    # reading commands name the file and the repair, and change nothing
    assert main(["summarize", str(out)]) == 2
    err = _one_line(capsys)
    assert victim.name in err and f"study run {out / 'study.toml'} --out {out}" in err
    assert main(["info", str(out)]) == 0
    text = capsys.readouterr().out
    assert "damaged:    1 checkpoint piece(s)" in text and victim.name in text
    assert file_tree(out) == tree
    # a resume sets it aside (byte for byte), refits its one pair, keeps the other 7
    warnings = _assert_resumes_to(cfg, out, reference[1], 1, capsys)
    assert f"{victim} is damaged" in warnings and "fitted again" in warnings
    assert (out / "damaged" / victim.name).read_bytes() == damaged
    assert main(["info", str(out)]) == 0
    assert "set aside:  1 damaged file(s)" in capsys.readouterr().out


def test_a_piece_of_another_configuration_is_set_aside(split_run, reference, tmp_path, capsys):
    cfg, out, _ = split_run
    other_cfg = tmp_path / "other.toml"
    other_cfg.write_text(_grid(seed=4))
    run_study(load_config(other_cfg).with_replicates(1), tmp_path / "other")
    (foreign,) = Store(tmp_path / "other").piece_files()
    shutil.copy(foreign, out / "checkpoints" / foreign.name)
    assert main(["summarize", str(out)]) == 2
    err = _one_line(capsys)
    assert foreign.name in err and "another configuration" in err
    warnings = _assert_resumes_to(cfg, out, reference[1], 0, capsys)
    assert "another configuration" in warnings
    assert (out / "damaged" / foreign.name).is_file()


def test_an_unstamped_piece_of_other_terms_is_set_aside(split_run, reference, capsys):
    """Pieces written before stamps existed are checked by shape."""
    cfg, out, _ = split_run
    piece = Store(out).read_piece(Store(out).piece_files()[0])
    wide = {
        k: np.concatenate([v, v], axis=-1) if v.ndim == 3 else v for k, v in piece.values.items()
    }
    path = Store(out).write_piece(Piece(piece.condition, piece.replicate + 100, wide))
    warnings = _assert_resumes_to(cfg, out, reference[1], 0, capsys)
    assert f"{path} is damaged (its engines or terms are not this run's)" in warnings


def test_a_truncated_results_file_is_rebuilt_from_the_pieces(reference, tmp_path, capsys):
    _, clean = reference
    out = tmp_path / "run"
    shutil.copytree(clean, out)
    data = (out / "results.nc").read_bytes()
    (out / "results.nc").write_bytes(data[: len(data) // 2])
    # summarize works from the pieces; info says the file is damaged and how to rebuild it
    assert main(["summarize", str(out)]) == 0
    capsys.readouterr()
    assert main(["info", str(out)]) == 0
    assert f"results.nc: damaged (OSError): `study merge {out}` rebuilds" in capsys.readouterr().out
    assert main(["merge", str(out)]) == 0
    capsys.readouterr()
    with xr.open_dataset(out / "results.nc") as a, xr.open_dataset(clean / "results.nc") as b:
        xr.testing.assert_identical(comparable(a.load()), comparable(b.load()))
    # with no pieces at all, the damaged file is named with what to do
    (out / "results.nc").write_bytes(data[: len(data) // 2])
    shutil.rmtree(out / "checkpoints")
    (out / "manifest.json").unlink()
    assert main(["summarize", str(out)]) == 2
    assert "results.nc is damaged" in _one_line(capsys)


@pytest.mark.parametrize("toml", ["kept", "damaged too"])
def test_a_manifest_that_does_not_parse_is_rebuilt_on_resume(toml, reference, tmp_path, capsys):
    cfg, clean = reference
    out = tmp_path / "run"
    shutil.copytree(clean, out)
    (out / "manifest.json").write_text('{"config_hash": "12')
    if toml == "damaged too":  # then the pieces' stamps confirm the configuration
        (out / "study.toml").write_text("name = [")
    tree = file_tree(out)
    assert main(["summarize", str(out)]) == 2
    err = _one_line(capsys)
    assert "manifest.json is corrupt" in err and f"--out {out}" in err
    assert main(["info", str(out)]) == 2
    capsys.readouterr()
    assert file_tree(out) == tree
    warnings = _assert_resumes_to(cfg, out, clean, 0, capsys)
    assert "manifest.json does not parse; moved to" in warnings
    assert (out / "damaged" / "manifest.json").read_text() == '{"config_hash": "12'
    assert main(["summarize", str(out)]) == 0


def test_a_corrupt_manifest_is_not_rebuilt_for_another_configuration(reference, tmp_path, capsys):
    _, clean = reference
    out = tmp_path / "run"
    shutil.copytree(clean, out)
    (out / "manifest.json").write_text("not json")
    other = tmp_path / "other.toml"
    other.write_text(_grid(seed=9))
    tree = file_tree(out)
    assert main(["run", str(other), "--out", str(out)]) == 2
    err = _one_line(capsys)
    assert "manifest.json does not parse" in err and "--out for a new directory" in err
    assert file_tree(out) == tree


def test_a_missing_manifest_beside_checkpoints_is_rebuilt(reference, tmp_path, capsys):
    cfg, clean = reference
    out = tmp_path / "run"
    shutil.copytree(clean, out)
    (out / "manifest.json").unlink()
    assert main(["summarize", str(out)]) == 2
    assert "manifest.json is missing beside checkpoints" in _one_line(capsys)
    warnings = _assert_resumes_to(cfg, out, clean, 0, capsys)
    assert "is missing beside checkpoints; rebuilt" in warnings


def _fail_on_call(monkeypatch, target: object, name: str, at: int) -> list[int]:
    """Make ``target.name`` raise ENOSPC on its ``at``-th call."""
    real = getattr(target, name)
    calls = [0]

    def fake(*args, **kwargs):
        calls[0] += 1
        if calls[0] == at:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(*args, **kwargs)

    monkeypatch.setattr(target, name, fake)
    return calls


def test_a_full_disk_while_writing_a_piece_leaves_a_consistent_store(
    reference, tmp_path, monkeypatch, capsys
):
    cfg, clean = reference
    out = tmp_path / "run"
    real_savez = np.savez
    calls = [0]

    def savez(fh, **arrays):  # the write itself fails half-way, as on a full disk
        calls[0] += 1
        if calls[0] == 4:
            fh.write(b"PK\x03\x04 half a zip")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_savez(fh, **arrays)

    monkeypatch.setattr(np, "savez", savez)
    with pytest.raises(RunError, match=r"no space left to write in .*; the finished replicates"):
        run_study(load_config(cfg), out)
    monkeypatch.undo()
    store = Store(out)
    assert not store.leftover_temporaries()  # the half-written piece is gone
    piece = store.load()  # every piece on disk reads
    assert piece is not None and len(piece) == 3
    with xr.open_dataset(out / "results.nc") as ds:  # results.nc holds what was done
        assert int(ds.done.sum()) == 3
    assert main(["summarize", str(out)]) == 0
    capsys.readouterr()
    _assert_resumes_to(cfg, out, clean, 5, capsys)


def test_a_full_disk_while_writing_results_keeps_the_pieces(
    reference, tmp_path, monkeypatch, capsys
):
    cfg, clean = reference
    out = tmp_path / "run"
    _fail_on_call(monkeypatch, Store, "write_results", 1)
    with pytest.raises(RunError, match="no space left"):
        run_study(load_config(cfg), out)
    monkeypatch.undo()
    assert not (out / "results.nc").exists() and not Store(out).leftover_temporaries()
    piece = Store(out).load()
    assert piece is not None and len(piece) == 8
    assert main(["run", str(cfg), "--out", str(out)]) == 0
    capsys.readouterr()
    with xr.open_dataset(out / "results.nc") as a, xr.open_dataset(clean / "results.nc") as b:
        xr.testing.assert_identical(comparable(a.load()), comparable(b.load()))


def test_the_cli_reports_a_full_disk_in_one_line_with_exit_1(
    reference, tmp_path, monkeypatch, capsys
):
    cfg, _ = reference
    _fail_on_call(monkeypatch, Store, "write_piece", 2)
    assert main(["run", str(cfg), "--out", str(tmp_path / "run"), "--workers", "1"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("study: no space left to write in") and "resume" in err[-1]


def test_store_errors_name_the_damaged_piece(reference, tmp_path):
    _, clean = reference
    out = tmp_path / "run"
    shutil.copytree(clean, out)
    (path,) = Store(out).piece_files()
    path.write_bytes(b"")
    with pytest.raises(StoreError, match=f"{path.name} is damaged .unreadable"):
        Store(out).load()


def test_pieces_of_different_engine_counts_are_a_store_error(tmp_path):
    """Review defect 1: pieces of runs with other engine lists never mix silently."""
    from models.base import FIT_FIELDS
    from study.schema import TERM_VARS

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
