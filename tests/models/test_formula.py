"""lme4-style formulas: the parser, the data they build, and ``study fit DATA "FORMULA"``.

The fits against lme4's own numbers are in ``tests/test_lme4_formulas.py``; here: term
names (as lme4 / broom.mixed print them), treatment contrasts, random-effects
structures, lme4's ``na.omit``, every refusal (one line, naming the problem), and the
command line (exit 2 with one line ``study: error: ...`` for bad input, as
``tests/test_bad_inputs.py`` checks for the rest of ``study``).
"""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
from helpers import DATA

from models.data import LMMData
from models.formula import Formula, model_data, parse
from models.structure import Structure
from study.cli.main import main

SLEEP = DATA / "sleepstudy.csv"


def _frame(n_groups: int = 4, per_group: int = 6, seed: int = 1) -> pd.DataFrame:
    """y, numeric x and z, a text factor Dose (a, b, c), groups s0.. (interleaved rows)."""
    rng = np.random.default_rng(seed)
    n = n_groups * per_group
    return pd.DataFrame(
        {
            "y": rng.normal(size=n),
            "x": rng.normal(size=n),
            "z": rng.normal(size=n),
            "Dose": [("a", "b", "c")[i % 3] for i in range(n)],
            "g": [f"s{(i * 5) % n_groups}" for i in range(n)],
        }
    )


# -- the parser -------------------------------------------------------------------------


def test_parse_the_parts_of_a_formula():
    f = parse("  Reaction ~ Days +\n (Days | Subject) ")
    assert f == Formula(
        "Reaction ~ Days + (Days | Subject)",
        "Reaction",
        "Days",
        ("Days",),
        True,
        "Subject",
        ("Days",),
        (),
    )
    assert f.columns == ("Reaction", "Days", "Subject")
    g = parse("y ~ C(Dose) * x + `my var` + (x || g)")
    assert (g.correlated, g.group, g.random) == (False, "g", ("x",))
    assert g.variables == ("Dose", "x", "my var") and g.categorical == ("Dose",)
    assert parse("y ~ (1 | g)").fixed == "1"  # an empty fixed part is the intercept


@pytest.mark.parametrize(
    ("formula", "fixed", "random", "correlated"),
    [
        ("y ~ x + (1 | g)", ("(Intercept)", "x"), ("(Intercept)",), True),
        ("y ~ x + (x | g)", ("(Intercept)", "x"), ("(Intercept)", "x"), True),  # implicit 1
        ("y ~ x + (1 + x | g)", ("(Intercept)", "x"), ("(Intercept)", "x"), True),
        ("y ~ x + (0 + x | g)", ("(Intercept)", "x"), ("x",), True),
        ("y ~ x + (-1 + x | g)", ("(Intercept)", "x"), ("x",), True),
        ("y ~ x + (x - 1 | g)", ("(Intercept)", "x"), ("x",), True),
        ("y ~ x + (x || g)", ("(Intercept)", "x"), ("(Intercept)", "x"), False),
        ("y ~ x + (1 | g) + (0 + x | g)", ("(Intercept)", "x"), ("(Intercept)", "x"), False),
        ("y ~ x + z + (z + x | g)", ("(Intercept)", "x", "z"), ("(Intercept)", "z", "x"), True),
        ("y ~ 0 + x + (0 + x | g)", ("x",), ("x",), True),
        ("y ~ -1 + x + (0 + x | g)", ("x",), ("x",), True),
        ("y ~ x + (0 + x | g) - 1", ("x",), ("x",), True),
        ("y ~ (1 | g)", ("(Intercept)",), ("(Intercept)",), True),
        ("y ~ x * z + (x | g)", ("(Intercept)", "x", "z", "x:z"), ("(Intercept)", "x"), True),
        ("y ~ x + x:z + (x:z | g)", ("(Intercept)", "x", "x:z"), ("(Intercept)", "x:z"), True),
        ("y ~ z:x + (x:z | g)", ("(Intercept)", "z:x"), ("(Intercept)", "z:x"), True),
    ],
)
def test_structures(formula, fixed, random, correlated):
    data, dropped = model_data(_frame(), formula)
    assert data.structure == Structure(fixed, random, correlated)
    assert dropped == 0


def test_double_bar_is_lme4s_expansion_into_one_term_bars():
    frame = _frame()
    a, _ = model_data(frame, "y ~ x + z + (x + z || g)")
    b, _ = model_data(frame, "y ~ x + z + (1 | g) + (0 + x | g) + (0 + z | g)")
    assert a.structure == b.structure and not a.structure.correlated
    assert a.structure.terms == [
        "(Intercept)", "x", "z", "sd__(Intercept)", "sd__x", "sd__z", "sd__Observation",
    ]  # fmt: skip


def test_factor_names_and_treatment_contrasts():
    frame = _frame()
    data, _ = model_data(frame, "y ~ x + Dose + (1 | g)")
    assert data.fixed_names == ("(Intercept)", "x", "Doseb", "Dosec")
    df = data.to_frame()  # sorted by group, as the data are
    order = np.argsort(frame["g"].to_numpy(), kind="stable")
    dose = frame["Dose"].to_numpy()[order]
    assert np.array_equal(df["Doseb"], (dose == "b").astype(float))
    assert np.array_equal(df["Dosec"], (dose == "c").astype(float))
    inter, _ = model_data(frame, "y ~ x * Dose + (x | g)")
    assert inter.fixed_names == ("(Intercept)", "x", "Doseb", "Dosec", "x:Doseb", "x:Dosec")
    j = inter.fixed_names.index("x:Dosec")
    assert np.allclose(inter.X[:, j], inter.X[:, 1] * inter.X[:, 3])
    full, _ = model_data(frame, "y ~ 0 + Dose + (0 + Dose | g)")  # no intercept: every level
    assert full.fixed_names == ("Dosea", "Doseb", "Dosec")
    assert np.array_equal(full.X.sum(axis=1), np.ones(len(frame)))
    ranef, _ = model_data(frame, "y ~ Dose + (Dose | g)")
    assert ranef.structure.random == ("(Intercept)", "Doseb", "Dosec")


def test_categoricals_from_c_and_pandas_levels():
    frame = _frame().assign(level=lambda d: np.arange(len(d)) % 3 + 1)
    data, _ = model_data(frame, "y ~ C(level) + (1 | g)")  # numbers as a factor
    assert data.fixed_names == ("(Intercept)", "C(level)2", "C(level)3")
    cat = pd.Categorical(frame["Dose"], categories=["c", "a", "b", "unused"])
    data, _ = model_data(frame.assign(Dose=cat), "y ~ Dose + (1 | g)")
    # the first category is the reference; an unused one is dropped (drop.unused.levels)
    assert data.fixed_names == ("(Intercept)", "Dosea", "Doseb")
    codes = frame.assign(Dose=pd.Categorical(["1", "2", "1"] * 8))
    assert model_data(codes, "y ~ Dose + (1 | g)")[0].fixed_names == ("(Intercept)", "Dose2")


def test_same_data_as_the_shorthand():
    """``y ~ x + z + (x + z | g)`` builds what ``LMMData.from_frame`` builds for --y/--x."""
    frame = _frame()
    data, dropped = model_data(frame, "y ~ x + z + (x + z | g)")
    ref = LMMData.from_frame(frame, "y", ["x", "z"], "g")
    assert dropped == 0 and data.structure == ref.structure
    for name in ("y", "X", "group", "XtX", "Xty"):
        assert np.array_equal(getattr(data, name), getattr(ref, name)), name
    assert data.group_labels == ref.group_labels == ("s0", "s1", "s2", "s3")


def test_rows_with_missing_values_in_used_columns_are_dropped():
    frame = _frame().assign(unused=np.nan)  # a column the model does not use
    frame.loc[[2, 5], "y"] = np.nan
    frame.loc[5, "x"] = np.nan  # the same row twice: counted once
    frame.loc[7, "Dose"] = None
    frame.loc[9, "g"] = None
    data, dropped = model_data(frame, "y ~ x + Dose + (1 | g)")
    assert dropped == 4 and data.n_obs == len(frame) - 4
    kept = frame.drop(index=[2, 5, 7, 9])
    assert sorted(data.y) == sorted(kept["y"])
    assert model_data(frame, "y ~ z + (1 | g)")[1] == 3  # x and Dose are not used here


def test_integer_group_labels_survive_a_missing_value():
    frame = pd.read_csv(SLEEP)
    frame.loc[0, "Subject"] = np.nan  # makes the column float
    data, dropped = model_data(frame, "Reaction ~ Days + (1 | Subject)")
    assert dropped == 1 and data.group_labels[:2] == ("308", "309")


def test_c_levels_of_whole_numbers_survive_a_missing_value():
    frame = pd.read_csv(SLEEP)
    frame = frame[frame.Days < 3].reset_index(drop=True)
    frame.loc[0, "Days"] = np.nan  # makes the column float
    data, dropped = model_data(frame, "Reaction ~ C(Days) + (1 | Subject)")
    assert dropped == 1 and data.fixed_names == ("(Intercept)", "C(Days)1", "C(Days)2")


def test_rows_sorted_by_group_stably():
    frame = _frame(n_groups=3, per_group=4)
    data, _ = model_data(frame, "y ~ x + (1 | g)")
    assert data.group_labels == ("s0", "s1", "s2")
    assert np.all(np.diff(data.group) >= 0)
    for k, label in enumerate(data.group_labels):
        assert np.array_equal(data.y[data.group == k], frame.loc[frame["g"] == label, "y"])


PARSE_ERRORS = [
    ("", r"empty formula.*e\.g\. Reaction ~"),
    ("y", r"has no '~'"),
    ("~ x + (1 | g)", r"no response before '~'"),
    ("y ~ x ~ z + (1 | g)", r"more than one '~'"),
    ("log(y) ~ x + (1 | g)", r"response must be one column name.*log\(y\)"),
    ("y ~ x", r"no random part; a mixed model needs one, e\.g\. \+ \(1 \| group\)"),
    ("y ~ x + (1 | g/h:k)", r"mixes / and : in its grouping"),
    ("y ~ x + (1 | g) + (x | h) + (1 | h)", r"several bars with one group must each hold one"),
    ("y ~ x + (1 | g/)", r"grouping factor must be one column name"),
    ("y ~ (x | g)", r"random term 'x' is not in the fixed part; add it there: y ~ x \+ \(x \| g\)"),
    ("y ~ z + (x | g)", r"random term 'x'.*add it there: y ~ z \+ x \+ \(x \| g\)"),
    ("y ~ 0 + x + (x | g)", r"random intercept.*not in the fixed part.*\(0 \+ x \| g\)"),
    ("y ~ x + (1 | g) - 1", r"random intercept.*drop the 0 / -1"),
    ("y ~ x + (x | g) + (1 | g)", r"several bars with one group must each hold one term"),
    ("y ~ x + (1 | g) + (1 | g)", r"random term '\(Intercept\)' appears twice"),
    ("y ~ x - (1 | g)", r"'\(1 \| g\)' is not a random term"),
    ("y ~ x + (1 | g):x", r"is not a random term"),
    ("y ~ scale(x) + (1 | g)", r"'scale\(x\)': function calls are not supported except C"),
    ("y ~ x + ( | g)", r"no terms before the bar"),
    ("y ~ x + (1 | )", r"grouping factor must be one column name"),
    ("y ~ x + (1 ||| g)", r"must hold one '\|' or '\|\|'"),
    ("y ~ x + (1 | g", r"unbalanced parentheses"),
    ("y ~ x) + (1 | g)", r"'\)' has no matching '\('"),
    ("y ~ x + (1 | g) +", r"formula 'y ~ x \+ \(1 \| g\) \+': Operator `\+`"),
]


@pytest.mark.parametrize(("formula", "pattern"), PARSE_ERRORS)
def test_refusals_of_the_parser(formula, pattern):
    with pytest.raises(ValueError, match=pattern) as err:
        parse(formula)
    assert "\n" not in str(err.value) and "\x1b" not in str(err.value)


def _bad(frame: pd.DataFrame, row: int, col: str, value: object) -> pd.DataFrame:
    frame = frame.astype({col: object})
    frame.loc[row, col] = value
    return frame


DATA_ERRORS = [
    ("y ~ nope + (1 | g)", None, r"column\(s\) \['nope'\] not in the data; available"),
    ("y ~ x + (1 | grp)", None, r"\['grp'\] not in the data"),
    ("resp ~ x + (1 | g)", None, r"\['resp'\] not in the data"),
    (
        "y ~ x + (1 | g)",
        (3, "x", "high"),
        r"column 'x' must be numeric.*row 4 holds 'high'.*C\(x\)",
    ),
    ("y ~ x + (1 | g)", (0, "y", "abc"), r"column 'y' must be numeric, but data row 1 holds 'abc'"),
    ("y ~ x + (1 | g)", (5, "x", np.inf), r"column 'x' has 1 infinite value"),
    ("y ~ x + (1 | g)", (5, "y", 1e200), r"column 'y' has values too large"),
    ("y ~ x + Dose + (Dose || g)", None, r"categorical variable \(Dose\) are not supported"),
    ("y ~ Dose + (1 | g) + (0 + Dose | g)", None, r"categorical variable \(0 \+ Dose\)"),
    ("y ~ Dose + (0 + Dose | g)", None, r"random effect 'Dosea' of \(0 \+ Dose \| g\) is not a"),
]


@pytest.mark.parametrize(("formula", "damage", "pattern"), DATA_ERRORS)
def test_refusals_of_the_data(formula, damage, pattern):
    frame = _frame() if damage is None else _bad(_frame(), *damage)
    with pytest.raises(ValueError, match=pattern) as err:
        model_data(frame, formula)
    assert "\n" not in str(err.value)


def test_a_text_column_is_categorical_but_a_mixed_one_is_refused_unless_c():
    frame = _frame()
    assert model_data(frame, "y ~ Dose + (1 | g)")[0].q == 3
    mixed = _bad(frame, 3, "x", "high")
    data, _ = model_data(mixed.assign(x=mixed["x"].astype(str)), "y ~ C(x) + (1 | g)")
    assert data.q == len(frame)  # every value its own level: allowed, if silly


def test_all_rows_missing():
    frame = _frame().assign(y=np.nan)
    with pytest.raises(ValueError, match=r"no rows left: every row has a missing value"):
        model_data(frame, "y ~ x + (1 | g)")


# -- the command line -----------------------------------------------------------------


def _one_line_error(capsys) -> str:
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and err.startswith("study: error: "), err
    assert "Traceback" not in err
    return err


def test_fit_a_formula(capsys):
    assert main(["fit", str(SLEEP), "Reaction ~ Days + (1 | Subject)"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0] == "reml: Reaction ~ Days + (1 | Subject)"
    assert lines[1].startswith("180 rows, 18 groups; converged in")
    assert "sd__(Intercept)" in out and "sd__Days" not in out and "cor__" not in out
    assert "criterion 1786.47" in out and "dropped" not in out  # lme4: 1786.465085


def test_fit_a_formula_json(capsys):
    assert main(["fit", str(SLEEP), "Reaction ~ Days + (Days || Subject)", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["formula"] == "Reaction ~ Days + (Days || Subject)"
    assert (doc["dropped_rows"], doc["dropped_in"]) == (0, [])
    terms = [r["term"] for r in doc["terms"]]
    assert terms == ["(Intercept)", "Days", "sd__(Intercept)", "sd__Days", "sd__Observation"]
    assert doc["glance"]["criterion"] == pytest.approx(1743.669294, rel=1e-6)  # lme4


def test_fit_drops_rows_with_missing_values(tmp_path, capsys):
    frame = pd.read_csv(SLEEP)
    frame.loc[[3, 50], "Reaction"] = np.nan
    frame.loc[[3, 7], "Days"] = np.nan
    csv = tmp_path / "gaps.csv"
    frame.to_csv(csv, index=False)
    assert main(["fit", str(csv), "Reaction ~ Days + (Days | Subject)"]) == 0
    out = capsys.readouterr().out
    assert "177 rows, 18 groups" in out
    assert "dropped 3 rows with missing values in Reaction, Days (lme4 na.omit)" in out
    assert main(["fit", str(csv), "Reaction ~ Days + (Days | Subject)", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert (doc["dropped_rows"], doc["dropped_in"]) == (3, ["Reaction", "Days"])
    assert doc["glance"]["nobs"] == 177


def test_shorthand_shows_its_formula(capsys):
    assert main(["fit", str(SLEEP), "--y", "Reaction", "--x", "Days", "--group", "Subject"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "reml: Reaction ~ Days + (1 + Days | Subject)"


def test_fit_a_categorical_fixed_effect(tmp_path, capsys):
    frame = pd.read_csv(DATA / "sleepstudy_dose.csv")
    frame["Level"] = np.where(frame["Dose"] >= 1, "high", "low")
    csv = tmp_path / "levels.csv"
    frame.to_csv(csv, index=False)
    assert main(["fit", str(csv), "Reaction ~ Days + Level + (Days | Subject)", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [r["term"] for r in doc["terms"]][:3] == ["(Intercept)", "Days", "Levellow"]


CLI_ERRORS = [
    (["Reaction ~ Days + (1 | Subject)", "--y", "Reaction"], r"either a formula or --y.*drop --y"),
    (["--y", "Reaction", "--x", "Days"], r"give a model: a formula.*missing: --group"),
    ([], r"give a model.*missing: --y, --x, --group"),
    (["Reaction ~ Days"], r"no random part"),
    (
        ["Reaction ~ Days + (1 | Subject) + (1 | Reaction)"],
        r"grouping factor 'Reaction' has 180 levels for 180 observations.*checkNlevels",
    ),
    (
        ["Reaction ~ Days + (1 | Subject/Days)"],
        r"grouping factor 'Days:Subject' has 180 levels for 180 observations",
    ),
    (
        ["Reaction ~ Days + (Days | Subject) + (1 | Days)", "--engine", "gee"],
        r"engine gee fits one grouping factor only.*2 \(Subject, Days\); use reml",
    ),
    (["Reaction ~ Nope + (1 | Subject)"], r"sleepstudy\.csv: column\(s\) \['Nope'\] not in"),
    (["Reaction ~ (Days | Subject)"], r"'Days' is not in the fixed part; add it there"),
    (
        ["Reaction ~ Days + (Days | Subject)", "--ci", "t", "--engine", "bayes"],
        r"not an option of engine bayes \(an option of reml\)",
    ),
]


@pytest.mark.parametrize(("argv", "pattern"), CLI_ERRORS)
def test_bad_formula_input_is_one_line_exit_2(argv, pattern, capsys):
    assert main(["fit", str(SLEEP), *argv]) == 2
    assert re.search(pattern, _one_line_error(capsys))


def test_bad_data_for_a_formula_is_one_line_exit_2(tmp_path, capsys):
    frame = pd.read_csv(SLEEP)
    const = tmp_path / "const.csv"
    frame.assign(Days=3.0).to_csv(const, index=False)
    assert main(["fit", str(const), "Reaction ~ Days + (1 | Subject)"]) == 2
    assert "term 'Days' is constant" in _one_line_error(capsys)
    text = tmp_path / "text.csv"
    _bad(frame, 11, "Days", "ten").to_csv(text, index=False)
    assert main(["fit", str(text), "Reaction ~ Days + (1 | Subject)"]) == 2
    assert "column 'Days' must be numeric, but data row 12 holds 'ten'" in _one_line_error(capsys)
    few = tmp_path / "few.csv"
    frame.groupby("Subject").head(2).to_csv(few, index=False)
    assert main(["fit", str(few), "Reaction ~ Days + (Days | Subject)"]) == 2
    assert "not identifiable" in _one_line_error(capsys)
    assert main(["fit", str(few), "Reaction ~ Days + (1 | Subject)"]) == 0  # 36 rows > 18
    capsys.readouterr()


def test_bayes_fits_a_random_intercept_only(capsys):
    """The Bayesian engine on a structure other than all slopes (its priors line too)."""
    assert main(["fit", str(SLEEP), "Reaction ~ Days + (1 | Subject)", "--engine", "bayes"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "bayes: Reaction ~ Days + (1 | Subject)"
    assert "sd__(Intercept)" in out and "sd__Days" not in out and "LKJ" not in out
    assert "  Days: Normal(0, " in out and "; sd__Days" not in out
