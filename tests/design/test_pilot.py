"""Pilot data (study/design/pilot.py): checked as `study fit` checks a CSV, hashed, and
drawn from: the pilot's own groups and rows, groups resampled with replacement, rows
per group as whole copies plus a subsample without replacement."""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from formulaic import model_matrix
from helpers import DATA

from study.design.datafile import load_formula
from study.design.pilot import Pilot
from study.errors import UserError
from study.usecases.fitting import fit_csv

SLEEP = DATA / "sleepstudy.csv"
UNBALANCED = DATA / "sleepstudy_unbalanced.csv"
FORMULA = "Reaction ~ Days + (Days | Subject)"


def _groups(frame: pd.DataFrame, group: np.ndarray) -> list[tuple]:
    """Each group's rows, as a tuple of row tuples."""
    rows = list(frame.itertuples(index=False, name=None))
    return [tuple(r for r, g in zip(rows, group, strict=True) if g == k) for k in np.unique(group)]


def _state(rng: np.random.Generator) -> dict:
    return rng.bit_generator.state


def test_load_holds_the_rows_study_fit_uses_and_the_files_sha256():
    pilot = Pilot.load(SLEEP, FORMULA)
    data, *_ = load_formula(SLEEP, FORMULA)
    assert pilot.sha256 == hashlib.sha256(SLEEP.read_bytes()).hexdigest()
    # the hash tests/data/README.md records for the file
    assert pilot.sha256.startswith("2918bbddf750e78003059efa97b94885")
    assert (pilot.n_obs, pilot.n_groups, pilot.predictors) == (180, 18, ("Days",))
    assert pilot.group_column == "Subject" and pilot.labels == data.group_labels
    np.testing.assert_array_equal(pilot.group, data.group)
    np.testing.assert_array_equal(pilot.frame["Days"].to_numpy(float), data.X[:, 1])
    assert pilot.formula.response == "Reaction" and pilot.formula.fixed == "Days"


def test_the_right_hand_side_alone_gives_the_same_pilot():
    full = Pilot.load(SLEEP, FORMULA)
    rhs = Pilot.load(SLEEP, "Days + (Days | Subject)")
    pd.testing.assert_frame_equal(full.frame, rhs.frame)
    np.testing.assert_array_equal(full.group, rhs.group)
    assert rhs.sha256 == full.sha256 and rhs.formula.response == ""
    assert rhs.formula.text == "Days + (Days | Subject)"
    with pytest.raises(UserError, match=r"^formula 'Days' has no random part"):
        Pilot.load(SLEEP, "Days")


def test_draw_without_groups_or_sizes_is_the_pilot_itself_and_uses_no_randomness():
    pilot = Pilot.load(UNBALANCED, FORMULA)
    rng = np.random.default_rng(20250101)
    before = _state(rng)
    frame, group = pilot.draw(rng, None, None)
    assert _state(rng) == before
    pd.testing.assert_frame_equal(frame, pilot.frame)
    np.testing.assert_array_equal(group, pilot.group)
    assert frame is not pilot.frame
    # a group_size equal to every group's own size is the pilot too (balanced data)
    balanced = Pilot.load(SLEEP, FORMULA)
    frame, group = balanced.draw(rng, None, 10)
    assert _state(rng) == before
    pd.testing.assert_frame_equal(frame, balanced.frame)


@pytest.fixture
def traced(tmp_path: Path) -> Pilot:
    """The unbalanced sleepstudy (groups of 7 or 8 rows) with a predictor ``row``
    numbering the file's rows, so that every drawn row says where it came from."""
    frame = pd.read_csv(UNBALANCED)
    frame["row"] = np.arange(len(frame), dtype=float)
    path = tmp_path / "traced.csv"
    frame.to_csv(path, index=False)
    return Pilot.load(path, "Reaction ~ Days + row + (Days | Subject)")


def test_more_groups_are_copies_of_pilot_groups_drawn_with_replacement(traced):
    pilot = traced
    own = _groups(pilot.frame, pilot.group)
    assert len(set(own)) == pilot.n_groups  # every pilot group has its own days
    frame, group = pilot.draw(np.random.default_rng(7), groups=40)
    assert np.all(np.diff(group) >= 0) and group.dtype == np.int64
    np.testing.assert_array_equal(np.unique(group), np.arange(40))
    drawn = _groups(frame, group)
    assert all(g in own for g in drawn)
    assert len(set(drawn)) < 40  # with replacement: 40 draws from 18 repeat some
    again, _ = pilot.draw(np.random.default_rng(7), groups=40)
    pd.testing.assert_frame_equal(frame, again)
    fewer, g3 = pilot.draw(np.random.default_rng(8), groups=3)
    assert len(np.unique(g3)) == 3 and all(g in own for g in _groups(fewer, g3))


def test_group_size_repeats_a_groups_rows_then_subsamples_without_replacement(traced):
    pilot = traced
    own = [{r[1] for r in g} for g in _groups(pilot.frame, pilot.group)]  # file rows
    assert len({len(rows) for rows in own}) > 1  # groups of several sizes
    for size in (3, 7, 25):
        frame, group = pilot.draw(np.random.default_rng(size), None, size)
        assert np.all(np.bincount(group) == size)
        for k, rows in enumerate(_groups(frame, group)):
            used = Counter(r[1] for r in rows)
            assert set(used) <= own[k]
            low, extra = divmod(size, len(own[k]))
            assert all(low <= used[r] <= low + 1 for r in own[k]), (size, k)
            assert sum(used[r] > low for r in own[k]) == extra
            assert [r[1] for r in rows] == sorted(r[1] for r in rows)  # the pilot's order
    one_each = pilot.draw(np.random.default_rng(1), None, [2] * pilot.n_groups)[1]
    assert np.all(np.bincount(one_each) == 2)
    both, g = pilot.draw(np.random.default_rng(2), groups=30, group_size=12)
    assert both.shape == (360, 2) and np.all(np.bincount(g) == 12)


def test_bad_draws_are_refused():
    pilot = Pilot.load(SLEEP, FORMULA)
    rng = np.random.default_rng(1)
    for kwargs, match in (
        ({"groups": 0}, r"groups=0: must be a whole number >= 1"),
        ({"groups": 2.5}, r"groups=2.5"),
        ({"group_size": 0}, r"group_size=0"),
        ({"group_size": [3, 4]}, r"group_size has 2 sizes for 18 groups"),
    ):
        with pytest.raises(ValueError, match=match):
            pilot.draw(rng, **kwargs)


def test_sha256_follows_the_files_bytes(tmp_path):
    path = tmp_path / "pilot.csv"
    text = SLEEP.read_text()
    path.write_text(text)
    first = Pilot.load(path, FORMULA).sha256
    path.write_text(text.replace("249.56", "249.57", 1))
    second = Pilot.load(path, FORMULA).sha256
    assert first != second and second == hashlib.sha256(path.read_bytes()).hexdigest()
    path.write_text(text)
    assert Pilot.load(path, FORMULA).sha256 == first


def test_text_predictors_keep_the_pilots_levels_in_every_draw(tmp_path):
    frame = pd.read_csv(SLEEP)
    subjects = sorted(frame["Subject"].unique())
    frame["site"] = frame["Subject"].map(
        {s: "abc"[i % 3] for i, s in enumerate(subjects)}
    )  # one site per subject: a group-level factor
    path = tmp_path / "sites.csv"
    frame.to_csv(path, index=False)
    formula = "Reaction ~ Days * site + (Days | Subject)"
    pilot = Pilot.load(path, formula)
    assert pilot.predictors == ("Days", "site")
    assert list(pilot.frame["site"].cat.categories) == ["a", "b", "c"]
    data, *_ = load_formula(path, formula)
    own = model_matrix("~ " + pilot.formula.fixed, pilot.frame)
    np.testing.assert_array_equal(own.to_numpy(dtype=float), data.X)
    # two groups drawn from one site: the model matrix still has the pilot's columns
    rng = np.random.default_rng(3)
    while True:
        drawn, _ = pilot.draw(rng, groups=2)
        if drawn["site"].nunique() == 1:
            break
    columns = model_matrix("~ " + pilot.formula.fixed, drawn).columns
    assert len(columns) == data.q


def test_rows_with_missing_values_are_dropped_as_study_fit_drops_them(tmp_path):
    text = SLEEP.read_text().splitlines()
    text[5] = text[5].replace(",4,", ",,")  # one missing Days
    path = tmp_path / "gap.csv"
    path.write_text("\n".join(text) + "\n")
    pilot = Pilot.load(path, FORMULA)
    done = fit_csv(path, formula=FORMULA)
    assert pilot.dropped == done.dropped == 1 and pilot.n_obs == done.data.n_obs == 179


BAD = {
    "semicolons": "Reaction;Days;Subject\n1;2;a\n",
    "no rows": "Reaction,Days,Subject\n",
    "one group": "Reaction,Days,Subject\n1,0,a\n2,1,a\n3,2,a\n",
    "constant predictor": "Reaction,Days,Subject\n"
    + "".join(f"{i * 1.7 % 5},3,{'ab'[i % 2]}\n" for i in range(12)),
    "text in a number": "Reaction,Days,Subject\n1,0,a\n2,x,a\n3,1,b\n4,2,b\n",
    "one row per group": "Reaction,Days,Subject\n1,0,a\n2,1,b\n3,2,c\n",
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_csv_study_fit_refuses_is_refused_with_its_message(case, tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text(BAD[case])
    formula = "Reaction ~ Days + (1 | Subject)"
    with pytest.raises(UserError) as fit:
        fit_csv(path, formula=formula)
    with pytest.raises(UserError) as pilot:
        Pilot.load(path, formula)
    assert str(pilot.value) == str(fit.value)
    assert "\n" not in str(pilot.value)


@pytest.mark.parametrize(
    ("formula", "match"),
    [
        ("Reaction ~ Dayz + (1 | Subject)", r"column\(s\) \['Dayz'\] not in the data"),
        ("Reaction ~ Days + (Days | Subjects)", r"\['Subjects'\] not in the data"),
        ("Reaction ~ Days", r"no random part"),
    ],
)
def test_a_formula_study_fit_refuses_is_refused(formula, match):
    with pytest.raises(UserError, match=match) as pilot:
        Pilot.load(SLEEP, formula)
    with pytest.raises(UserError) as fit:
        fit_csv(SLEEP, formula=formula)
    assert str(pilot.value) == str(fit.value)


def test_a_missing_file_is_refused(tmp_path):
    with pytest.raises(UserError, match=r"not found; give the path to a CSV file"):
        Pilot.load(tmp_path / "nope.csv", FORMULA)
    with pytest.raises(UserError, match=r"is a directory"):
        Pilot.load(tmp_path, FORMULA)


def test_path_is_kept_as_given():
    assert Pilot.load(str(SLEEP), FORMULA).path == Path(SLEEP)
