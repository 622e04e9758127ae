"""A corpus of bad inputs for the ``study`` command line, one case each.

Every case runs ``study`` in process (``study.cli.main.main``) in a fresh temporary
directory and checks the project's error policy (README, "The command line"): exit
code 2 for bad input (1 only when ``study fit`` ran a fit that failed), exactly one
line on stderr that starts with ``study`` and names the problem and the fix, nothing on
stdout, no traceback, and nothing written or changed in the working directory.

The message checks are sets of focused regular expressions (the key, the option or
the file, and a word of the fix), all of which must match somewhere in the line, in
any order, so that rewording a message does not break them.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypedDict

import pytest

from study.cli.main import main

# -- the case format ------------------------------------------------------------------


@dataclass
class Ctx:
    """What a case's setup may use: the working directory, monkeypatch and the run."""

    tmp: Path
    monkeypatch: pytest.MonkeyPatch
    real_run: Callable[[], Path]


Setup = Callable[[Ctx], None]


@dataclass
class Case:
    """One bad input: the command line, the files it needs, what ``study`` must say."""

    id: str
    category: str
    argv: list[str]
    pattern: str
    files: dict[str, str | bytes] = field(default_factory=dict)
    #: the exit code, or the codes allowed (a fit that may be refused or fail)
    expect_code: int | tuple[int, ...] = 2
    setup: Setup | None = None


CATEGORIES = ("config", "cli", "csv", "store")


def allof(*parts: str) -> str:
    """A regex matching a line that contains every one of ``parts`` (in any order)."""
    return "^" + "".join(f"(?=.*(?:{p}))" for p in parts)


# -- inputs -----------------------------------------------------------------------------

#: a small valid study (REML only): what the config cases start from
TINY_DESIGN = "[design]\ngroups = 6\ngroup_size = 5\n"
TINY_ENGINES = '[engines]\nrun = ["reml"]\n'
TINY = f'name = "tiny"\nreplicates = 3\nseed = 7\n\n{TINY_DESIGN}\n{TINY_ENGINES}'


def toml(
    top: str = "",
    design: str = "",
    engines: str = TINY_ENGINES,
    extra: str = "",
) -> str:
    """A config: the tiny study with lines added at the top, in [design], and after."""
    return (
        f'name = "tiny"\nreplicates = 3\nseed = 7\n{top}\n{TINY_DESIGN}{design}\n{engines}\n{extra}'
    )


class Call(TypedDict):
    """The command line of a case and the files it needs."""

    argv: list[str]
    files: dict[str, str | bytes]


def run_config(text: str | bytes, name: str = "c.toml", *more: str) -> Call:
    """``study run NAME`` on ``text`` (in process: a config wrongly accepted runs fast)."""
    return {"argv": ["run", name, "--workers", "1", *more], "files": {name: text}}


def _good_rows() -> list[tuple[float, float, str]]:
    rows = []
    for s in range(6):
        for i in range(5):
            dose = float(i + 1 + s % 2)
            noise = ((i * 7 + s * 3) % 5 - 2) * 0.1
            rows.append((round(1 + 0.5 * dose + 0.3 * s + noise, 3), dose, f"s{s}"))
    return rows


def csv_text(rows: Sequence[Sequence[object]], sep: str = ",") -> str:
    """A CSV with columns resp, dose, school."""
    lines = [sep.join(("resp", "dose", "school"))]
    lines += [sep.join(str(v) for v in row) for row in rows]
    return "\n".join(lines) + "\n"


GOOD_ROWS = _good_rows()
GOOD_CSV = csv_text(GOOD_ROWS)
FIT = ["--y", "resp", "--x", "dose", "--group", "school"]
#: GOOD_ROWS with two more grouping columns: a site that is the same everywhere, and
#: pairs of consecutive rows (15 levels of 2 rows)
CROSSED_CSV = "resp,dose,school,site,pair\n" + "".join(
    f"{r},{d},{s},A,p{i // 2}\n" for i, (r, d, s) in enumerate(GOOD_ROWS)
)


def fit_csv(name: str, text: str | bytes, *more: str) -> Call:
    """``study fit NAME --y resp --x dose --group school`` on ``text``."""
    return {"argv": ["fit", name, *FIT, *more], "files": {name: text}}


#: the formula of the `study design` cases
PILOT = "resp ~ dose + (1 | school)"


def design_csv(name: str, text: str | bytes, *more: str) -> Call:
    """``study design NAME "resp ~ dose + (1 | school)" -o p.toml`` on ``text``."""
    return {"argv": ["design", name, PILOT, "-o", "p.toml", *more], "files": {name: text}}


def _with_row(i: int, row: tuple[object, ...]) -> list[tuple[object, ...]]:
    rows: list[tuple[object, ...]] = list(GOOD_ROWS)
    rows[i] = row
    return rows


#: bytes that are no text: a PNG header, NULs, invalid UTF-8
BINARY = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\xff\xfe\xfa" + bytes(range(256)) * 4

# -- setups ------------------------------------------------------------------------------


def copy_run(name: str = "run", damage: Callable[[Path], None] | None = None) -> Setup:
    """Copy the module's small real run to ``name`` (then damage the copy)."""

    def setup(ctx: Ctx) -> None:
        dest = ctx.tmp / name
        shutil.copytree(ctx.real_run(), dest)
        if damage is not None:
            damage(dest)

    return setup


def both(*setups: Setup) -> Setup:
    def setup(ctx: Ctx) -> None:
        for s in setups:
            s(ctx)

    return setup


def make_dir(name: str) -> Setup:
    def setup(ctx: Ctx) -> None:
        (ctx.tmp / name).mkdir()

    return setup


def no_env(var: str) -> Setup:
    def setup(ctx: Ctx) -> None:
        ctx.monkeypatch.delenv(var, raising=False)

    return setup


def _piece(run: Path) -> Path:
    pieces = sorted((run / "checkpoints").glob("part-*.npz"))
    assert pieces, f"the real run has no checkpoint piece: {sorted(run.rglob('*'))}"
    return pieces[0]


def manifest_not_json(run: Path) -> None:
    (run / "manifest.json").write_text('{"config_hash": "abc", "engines": [\n')


def manifest_empty_object(run: Path) -> None:
    (run / "manifest.json").write_text("{}\n")


def only_truncated_results(run: Path) -> None:
    shutil.rmtree(run / "checkpoints")
    (run / "manifest.json").unlink()
    results = run / "results.nc"
    data = results.read_bytes()
    results.write_bytes(data[: len(data) // 2])


def truncate_piece(run: Path) -> None:
    piece = _piece(run)
    data = piece.read_bytes()
    piece.write_bytes(data[: len(data) // 2])


def garbage_piece(run: Path) -> None:
    piece = _piece(run)
    size = piece.stat().st_size
    piece.write_bytes((bytes(range(255, -1, -1)) * (size // 256 + 1))[:size])


def study_toml_invalid(run: Path) -> None:
    (run / "study.toml").write_text('name = "tiny"\n[design\ngroups = 6\n')


# -- the cases ---------------------------------------------------------------------------

MUST = r"\bmust\b"
PROBLEM_DIR = r"no such|does not exist|not found|not a (run|results)"

TREAT = 'fixed = "treat"\nbeta = [0.0, 0.3]\nrandom = "(1 | g)"\nre_sd = [1.0]\n'


def power_toml(power: str) -> str:
    """A small power study: a balanced cluster-level treatment, REML; ``power`` lines
    in its [power] table."""
    return (
        'name = "pw"\nreplicates = 3\nseed = 7\n\n[design]\ngroups = 6\ngroup_size = 5\n'
        'fixed = "treat"\nbeta = { "(Intercept)" = 0.0, treat = 0.3 }\n'
        'random = "(1 | g)"\nre_sd = [0.5]\n\n[design.predictors.treat]\nlevel = "group"\n'
        'distribution = "balanced"\n\n[engines]\nrun = ["reml"]\n\n'
        f"[power]\n{power}\n"
    )


def crossed_toml(design: str = "", engines: str = TINY_ENGINES, **keys: str) -> str:
    """A small crossed design (8 subjects x 6 items, a Latin-square condition, random
    slopes by both) with ``keys`` replaced (``crossed = "..."``) and ``design`` lines
    added to its [design] table."""
    table = {
        "crossed": "{ subj = 8, item = 6 }",
        "fixed": '"cond"',
        "beta": '{ "(Intercept)" = 0.0, cond = 0.3 }',
        "random": '"(1 + cond | subj) + (1 + cond | item)"',
        "re_sd": "{ subj = [0.6, 0.3], item = [0.4, 0.2] }",
    } | keys
    lines = "".join(f"{k} = {v}\n" for k, v in table.items() if v)
    return (
        f'name = "cx"\nreplicates = 3\nseed = 7\n\n[design]\n{lines}{design}\n'
        '[design.predictors.cond]\ndistribution = "latin_square"\nlevels = [-0.5, 0.5]\n\n'
        f"{engines}"
    )


CASES: list[Case] = [
    # ---- config: wrong types
    Case(
        "config-replicates-text",
        "config",
        **run_config(toml(top="").replace("replicates = 3", 'replicates = "ten"')),
        pattern=allof(r"\breplicates\b", "ten", MUST, "integer|whole number"),
    ),
    Case(
        "config-groups-float",
        "config",
        **run_config(toml().replace("groups = 6", "groups = 2.5")),
        pattern=allof(r"design\.groups\b", r"2\.5", MUST, "integer|whole number"),
    ),
    Case(
        "config-beta-text",
        "config",
        **run_config(toml(design='beta = "x"\n')),
        pattern=allof(r"design\.beta\b", MUST, "list|numbers"),
    ),
    Case(
        "config-sigma-text",
        "config",
        **run_config(toml(design='sigma = "1.0"\n')),
        pattern=allof(r"design\.sigma\b", MUST, "number"),
    ),
    Case(
        "config-fixed-random-effects-text",
        "config",
        **run_config(toml(design='fixed_random_effects = "yes"\n')),
        pattern=allof(r"design\.fixed_random_effects\b", MUST, "true or false|boolean"),
    ),
    Case(
        "config-engines-is-a-list",
        "config",
        **run_config(toml(engines="").replace("seed = 7\n", 'seed = 7\nengines = ["reml"]\n')),
        pattern=allof(r"\bengines\b", "table", r"\[engines\]", r"\brun\b"),
    ),
    # ---- config: missing values
    Case(
        "config-engines-run-empty",
        "config",
        **run_config(toml(engines="[engines]\nrun = []\n")),
        pattern=allof(r"engines\.run\b", MUST, "non-empty|at least one", "reml"),
    ),
    Case(
        "config-beta-too-short",
        "config",
        **run_config(toml(design="beta = [5.0]\n")),
        pattern=allof(r"design\.beta\b", MUST, r"\b2 values|two values"),
    ),
    Case(
        "config-group-size-list-too-short",
        "config",
        **run_config(toml().replace("group_size = 5", "group_size = [5, 5, 5, 5, 5]")),
        pattern=allof(r"design\.group_size\b", MUST, r"\b6\b"),
    ),
    Case(
        "config-prior-list-wrong-length",
        "config",
        **run_config(
            toml(
                engines='[engines]\nrun = ["reml", "bayes"]\n\n'
                "[engines.bayes.priors]\nfixed_scale = [10.0, 10.0, 10.0]\n"
            )
        ),
        pattern=allof(r"engines\.bayes\.priors\.fixed_scale\b", r"\b2\b|one per coefficient"),
    ),
    Case(
        "config-options-for-engine-not-run",
        "config",
        **run_config(toml(engines='[engines]\nrun = ["reml"]\n\n[engines.bayes]\nchains = 2\n')),
        pattern=allof(r"engines\.run\b", r"\bbayes\b", r"\badd\b|\bremove\b"),
    ),
    # ---- config: integers past 64 bits (numpy and netCDF overflow), sizes past memory
    Case(
        "config-seed-past-64-bits",
        "config",
        **run_config(toml().replace("seed = 7", "seed = 18446744073709551616")),
        pattern=allof(r"\bseed\b", "18446744073709551616", "64-bit", "smaller"),
    ),
    Case(
        "config-negative-integer-past-64-bits",
        "config",
        **run_config(toml().replace("seed = 7", "seed = -18446744073709551616")),
        pattern=allof(r"\bseed\b", "64-bit", "smaller"),
    ),
    Case(
        "config-condition-level-past-64-bits",
        "config",
        **run_config(toml(extra="[conditions]\ngroup_size = [5, 99999999999999999999]\n")),
        pattern=allof(r"conditions\.group_size\[1\]", "99999999999999999999", "64-bit"),
    ),
    Case(
        "config-added-condition-past-64-bits",
        "config",
        **run_config(toml(extra="[conditions]\nadd = [{groups = 99999999999999999999}]\n")),
        pattern=allof(r"conditions\.add\[0\]\.groups", "64-bit"),
    ),
    Case(
        "config-engine-option-past-64-bits",
        "config",
        **run_config(
            toml(engines=TINY_ENGINES + "\n[engines.reml]\nmaxiter = 2e100\n").replace(
                "2e100", "1" + "0" * 30
            )
        ),
        pattern=allof(r"engines\.reml\.maxiter", "64-bit"),
    ),
    Case(
        "config-replicates-past-64-bits",
        "config",
        **run_config(toml().replace("replicates = 3", "replicates = 18446744073709551616")),
        pattern=allof(r"\breplicates\b", "64-bit"),
    ),
    Case(
        "config-group-size-past-memory",
        "config",
        **run_config(toml().replace("group_size = 5", "group_size = 1000000000")),
        pattern=allof(r"design\.group_size\b", "1000000000", "rows", "memory", "fewer|smaller"),
    ),
    Case(
        "config-repeats-past-memory",
        "config",
        **run_config(toml(design="repeats = 9223372036854775807\n")),
        pattern=allof(r"design\.repeats\b", "rows", "memory", "fewer"),
    ),
    Case(
        "config-group-size-list-past-memory",
        "config",
        **run_config(
            toml().replace("group_size = 5", "group_size = [5, 5, 5, 5, 5, 9223372036854775807]")
        ),
        pattern=allof(r"design\.", "rows", "memory", "fewer|smaller"),
    ),
    Case(
        "config-condition-grid-past-memory",
        "config",
        **run_config(
            toml(
                extra="[conditions]\ngroups = "
                + str(list(range(2, 1002)))
                + "\ngroup_size = "
                + str(list(range(1, 1001)))
                + "\n"
            )
        ),
        pattern=allof(r"\bconditions\b", "1,000,000 conditions", "fewer|split"),
    ),
    # -- issue 25: predictors, icc, distributions, missingness ----------------------------
    Case(
        "config-share-outside-0-1",
        "config",
        **run_config(
            toml(
                design=TREAT + "[design.predictors.treat]\ndistribution = 'balanced'\nshare = 1.5\n"
            )
        ),
        pattern=allof(r"design\.predictors\.treat\.share", "1.5", "> 0 and < 1"),
    ),
    Case(
        "config-share-leaves-an-arm-empty",
        "config",
        **run_config(
            toml(
                design=TREAT
                + "[design.predictors.treat]\nlevel = 'group'\ndistribution = 'balanced'\n"
                "share = 0.05\n"
            )
        ),
        pattern=allof(r"design\.predictors\.treat\.share", "arm empty", "6 groups", "more groups"),
    ),
    Case(
        "config-levels-and-probs-differ-in-length",
        "config",
        **run_config(
            toml(
                design='fixed = "site"\nbeta = [0.0, 0.1, 0.2]\nrandom = "(1 | g)"\nre_sd = [1.0]\n'
                "[design.predictors.site]\ndistribution = 'categorical'\n"
                "levels = ['a', 'b', 'c']\nprobs = [0.5, 0.5]\n"
            )
        ),
        pattern=allof(r"design\.predictors\.site\.probs", "3 values", "one per level"),
    ),
    Case(
        "config-probs-do-not-sum-to-1",
        "config",
        **run_config(
            toml(
                design='fixed = "site"\nbeta = [0.0, 0.1]\nrandom = "(1 | g)"\nre_sd = [1.0]\n'
                "[design.predictors.site]\ndistribution = 'categorical'\n"
                "levels = ['a', 'b']\nprobs = [0.5, 0.6]\n"
            )
        ),
        pattern=allof(r"design\.predictors\.site\.probs", "sum to 1", "1.1"),
    ),
    Case(
        "config-icc-of-1",
        "config",
        **run_config(toml(design='random = "(1 | g)"\nicc = 1.0\nre_sd = []\n')),
        pattern=allof(r"design\.icc", ">= 0 and < 1"),
    ),
    Case(
        "config-icc-and-the-intercepts-sd",
        "config",
        **run_config(toml(design="icc = 0.1\nre_sd = [1.0, 2.0]\n")),
        pattern=allof(r"design\.icc", "re_sd", "drop"),
    ),
    Case(
        "config-t-residuals-without-variance",
        "config",
        **run_config(
            toml(extra="").replace(
                "[engines]", "[design.residuals]\ndistribution = 't'\ndf = 2\n\n[engines]"
            )
        ),
        pattern=allof(r"design\.residuals\.df", "> 2", "no variance"),
    ),
    Case(
        "config-formula-names-an-undefined-predictor",
        "config",
        **run_config(
            toml(
                design='fixed = "treat * agee"\nbeta = [0.0, 0.3, 0.0, 0.0]\nrandom = "(1 | g)"\n'
                "re_sd = [1.0]\n[design.predictors.treat]\ndistribution = 'bernoulli'\n"
                "[design.predictors.age]\ndistribution = 'normal'\n"
            )
        ),
        pattern=allof(r"design\.fixed", "agee", "not a predictor", r"design\.predictors\.agee"),
    ),
    Case(
        "config-beta-table-misses-a-term",
        "config",
        **run_config(toml(design="beta = { '(Intercept)' = 1.0 }\n")),
        pattern=allof(r"design\.beta", "no value for 'X'", "every fixed effect"),
    ),
    Case(
        "config-group-size-distribution-high-below-low",
        "config",
        **run_config(
            toml().replace(
                "group_size = 5", "group_size = { distribution = 'uniform', low = 9, high = 4 }"
            )
        ),
        pattern=allof(r"design\.group_size\.high", ">= low"),
    ),
    Case(
        "config-missing-share-of-1",
        "config",
        **run_config(
            toml().replace(
                "[engines]", "[design.missing]\nmechanism = 'mcar'\nshare = 1.0\n\n[engines]"
            )
        ),
        pattern=allof(r"design\.missing\.share", "> 0 and < 1"),
    ),
    Case(
        "config-heteroscedastic-by-an-unknown-effect",
        "config",
        **run_config(
            toml().replace("[engines]", "[design.residuals]\nby = 'Z'\ndelta = 0.1\n\n[engines]")
        ),
        pattern=allof(r"design\.residuals\.by", "'Z'", "fixed effect"),
    ),
    Case(
        "config-pilot-csv-study-fit-refuses",
        "config",
        argv=["run", "c.toml", "--workers", "1"],
        files={
            "c.toml": toml(
                design='predictors_from = "p.csv"\nfixed = "Days"\nrandom = "(1 | Subject)"\n'
                "re_sd = [1.0]\nbeta = [0.0, 1.0]\n"
            ).replace("groups = 6\ngroup_size = 5\n", ""),
            "p.csv": "Days,Subject\n0,a\n1,a\n2,a\n3,a\n",
        },
        pattern=allof(r"design\.predictors_from", "p.csv", "group"),
    ),
    Case(
        "config-sbc-of-a-violated-model",
        "config",
        argv=["sbc", "c.toml", "--workers", "1"],
        files={
            "c.toml": toml(
                engines='[engines]\nrun = ["bayes"]\n',
                extra="[design.residuals]\ndistribution = 't'\ndf = 5.0\n",
            ).replace("[engines]", "[design.random_effects]\ndistribution = 'laplace'\n\n[engines]")
        },
        pattern=allof(r"design\.random_effects", "simulation-based calibration", "study run"),
    ),
    Case(
        "config-condition-key-inside-a-list",
        "config",
        **run_config(toml(extra='[conditions]\n"beta.X" = [1.0, 2.0]\n')),
        pattern=allof(r"conditions\.beta\.X", "not a table", "keyed by term|whole"),
    ),
    # ---- config: unknown keys
    Case(
        "config-unknown-top-level-key",
        "config",
        **run_config(toml(top="replicate = 10")),
        pattern=allof(r"unknown key\b", r"\breplicate\b", r"allowed|did you mean", "replicates"),
    ),
    Case(
        "config-unknown-design-key",
        "config",
        **run_config(toml(design="group = 5\n")),
        pattern=allof(r"unknown key\b", r"design\.group\b", r"allowed|did you mean", "groups"),
    ),
    Case(
        "config-unknown-bayes-key",
        "config",
        **run_config(
            toml(engines='[engines]\nrun = ["reml", "bayes"]\n\n[engines.bayes]\nchain = 4\n')
        ),
        pattern=allof(r"unknown key\b", r"engines\.bayes\.chain\b", r"\bchains\b"),
    ),
    Case(
        "config-unknown-predictor-key",
        "config",
        **run_config(toml(extra="[design.predictor]\nmu = 0.0\n")),
        pattern=allof(r"unknown key\b", r"design\.predictor\.mu\b", r"allowed|did you mean"),
    ),
    # ---- config: out of range
    Case(
        "config-replicates-zero",
        "config",
        **run_config(toml().replace("replicates = 3", "replicates = 0")),
        pattern=allof(r"\breplicates = 0\b", MUST, r">= 1|at least 1|1 to"),
    ),
    Case(
        "config-replicates-too-many",
        "config",
        **run_config(toml().replace("replicates = 3", "replicates = 1000000000")),
        pattern=allof(r"\breplicates\b", MUST, r"1,000,000|1000000"),
    ),
    Case(
        "config-groups-one",
        "config",
        **run_config(toml().replace("groups = 6", "groups = 1")),
        pattern=allof(r"design\.groups = 1\b", MUST, r">= 2|at least 2"),
    ),
    Case(
        "config-sigma-negative",
        "config",
        **run_config(toml(design="sigma = -1\n")),
        pattern=allof(r"design\.sigma = -1\b", MUST, r"> 0|positive"),
    ),
    Case(
        "config-chains-zero",
        "config",
        **run_config(
            toml(engines='[engines]\nrun = ["reml", "bayes"]\n\n[engines.bayes]\nchains = 0\n')
        ),
        pattern=allof(r"engines\.bayes\.chains = 0\b", MUST, r">= 1|at least 1"),
    ),
    Case(
        "config-level-above-one",
        "config",
        **run_config(toml(top="level = 1.5")),
        pattern=allof(r"\blevel = 1\.5\b", MUST, r"< 1|between 0 and 1"),
    ),
    Case(
        "config-level-zero",
        "config",
        **run_config(toml(top="level = 0.0")),
        pattern=allof(r"\blevel = 0(\.0)?\b", MUST, r"> 0|between 0 and 1"),
    ),
    Case(
        "config-name-with-slash",
        "config",
        **run_config(toml().replace('name = "tiny"', 'name = "a/b"')),
        pattern=allof(r"\bname\b", "a/b", MUST, "slash"),
    ),
    # ---- config: correlations that are not positive definite
    Case(
        "config-re-cor-above-one",
        "config",
        **run_config(toml(design="re_cor = [[1.0, 1.5], [1.5, 1.0]]\n")),
        pattern=allof(r"design\.re_cor\b", MUST, "positive definite"),
    ),
    Case(
        "config-re-cor-3x3-not-pd",
        "config",
        **run_config(
            toml(
                design='predictors = ["A", "B"]\nbeta = [1.0, 2.0, 3.0]\n'
                "re_sd = [1.0, 1.0, 1.0]\n"
                "re_cor = [[1.0, 0.9, -0.9], [0.9, 1.0, 0.9], [-0.9, 0.9, 1.0]]\n"
            )
        ),
        pattern=allof(r"design\.re_cor\b", MUST, "positive definite"),
    ),
    Case(
        "config-re-cor-not-symmetric",
        "config",
        **run_config(toml(design="re_cor = [[1.0, 0.5], [0.2, 1.0]]\n")),
        pattern=allof(r"design\.re_cor\b", MUST, "symmetric"),
    ),
    # ---- config: files that are no config
    Case(
        "config-empty-file",
        "config",
        **run_config("", "empty.toml", "--replicates", "1", "--engines", "reml"),
        pattern=allof(r"empty\.toml", r"\bempty\b|no settings|nothing", r"give|write|add|use"),
    ),
    Case(
        "config-binary-invalid-utf8",
        "config",
        **run_config(BINARY, "binary.toml"),
        pattern=allof(
            r"binary\.toml", r"binary|not (a )?text|utf-?8|not valid TOML", r"give|use|check|save"
        ),
    ),
    Case(
        "config-binary-nul-bytes",
        "config",
        **run_config(b'name = "x"\x00\x00\x00\nreplicates = 3\n', "nul.toml"),
        pattern=allof(r"nul\.toml", r"binary|TOML|NUL|text", r"fix|give|use|check"),
    ),
    Case(
        "config-invalid-toml-syntax",
        "config",
        **run_config('name = "tiny"\n[design\ngroups = 6\n', "syntax.toml"),
        pattern=allof(r"syntax\.toml", "TOML", r"line \d+", r"\bfix\b|syntax"),
    ),
    Case(
        "config-duplicate-key",
        "config",
        **run_config(toml(design="groups = 7\n"), "dup.toml"),
        pattern=allof(r"dup\.toml", "TOML", r"line \d+"),
    ),
    Case(
        "config-is-a-directory",
        "config",
        argv=["run", "confdir", "--workers", "1"],
        setup=make_dir("confdir"),
        pattern=allof("confdir", "directory", r"give|use"),
    ),
    # ---- config: grids
    Case(
        "config-grid-groups-one",
        "config",
        **run_config(toml(extra="[conditions]\ngroups = [10, 1]\n")),
        pattern=allof(r"condition\b.*groups=1", r"design\.groups = 1\b", r">= 2|at least 2"),
    ),
    Case(
        "config-grid-add-negative-sigma",
        "config",
        **run_config(toml(extra="[conditions]\nadd = [{sigma = -1}]\n")),
        pattern=allof(r"\bcondition\b", r"sigma = -1\b", r"> 0|positive"),
    ),
    Case(
        "config-grid-unknown-factor",
        "config",
        **run_config(toml(extra="[conditions]\ngrups = [5, 10]\n")),
        pattern=allof(r"unknown key\b", r"conditions\.grups\b", r"\bgroups\b"),
    ),
    Case(
        "config-grid-empty-levels",
        "config",
        **run_config(toml(extra="[conditions]\ngroups = []\n")),
        pattern=allof(r"conditions\.groups\b", MUST, "non-empty"),
    ),
    Case(
        "config-grid-exclude-matches-nothing",
        "config",
        **run_config(toml(extra="[conditions]\ngroups = [6, 8]\nexclude = [{groups = 99}]\n")),
        pattern=allof(r"conditions\.exclude\b", "matches no condition"),
    ),
    # ---- config: names
    Case(
        "config-unknown-preset",
        "config",
        argv=["run", "defualt", "--workers", "1"],
        pattern=allof("defualt", r"preset|no such file", r"\bdefault\b", r"\bseed\b"),
    ),
    Case(
        "config-unknown-engine-in-run",
        "config",
        **run_config(toml(engines='[engines]\nrun = ["reml", "stan"]\n')),
        pattern=allof(r"engines\.run\b", r"\bstan\b", r"\breml\b", r"\bbayes\b"),
    ),
    # ---- CLI misuse
    Case(
        "cli-unknown-command",
        "cli",
        argv=["frobnicate"],
        pattern=allof("frobnicate", r"choose from|one of", r"\brun\b"),
    ),
    Case("cli-no-command", "cli", argv=[], pattern=allof(r"\bcommand\b", r"required|give")),
    Case(
        "cli-unknown-option",
        "cli",
        argv=["run", "default", "--frobnicate"],
        pattern=allof("--frobnicate", r"unrecognized|unknown", "--help"),
    ),
    Case(
        "cli-replicates-zero",
        "cli",
        argv=["run", "default", "--replicates", "0"],
        pattern=allof("--replicates", MUST, r"1 to 1,000,000"),
    ),
    Case(
        "cli-replicates-negative",
        "cli",
        argv=["run", "default", "--replicates", "-3"],
        pattern=allof("--replicates", "-3", MUST, r"1 to 1,000,000"),
    ),
    Case(
        "cli-replicates-text",
        "cli",
        argv=["run", "default", "--replicates", "ten"],
        pattern=allof("--replicates", "ten", MUST, "whole number"),
    ),
    Case(
        "cli-replicates-too-many",
        "cli",
        argv=["run", "default", "--replicates", str(10**9)],
        pattern=allof("--replicates", MUST, r"1 to 1,000,000"),
    ),
    Case(
        "cli-workers-zero",
        "cli",
        argv=["run", "default", "--workers", "0"],
        pattern=allof("--workers", MUST, r"1 to \d+"),
    ),
    Case(
        "cli-workers-text",
        "cli",
        argv=["run", "default", "--workers", "many"],
        pattern=allof("--workers", "many", MUST, "whole number"),
    ),
    Case(
        "cli-batch-size-zero",
        "cli",
        argv=["run", "default", "--batch-size", "0"],
        pattern=allof("--batch-size", MUST, "whole number"),
    ),
    Case(
        "cli-engines-unknown",
        "cli",
        argv=["run", "default", "--engines", "reml,stan"],
        pattern=allof("--engines", r"\bstan\b|reml,stan", r"\breml\b", r"\bbayes\b"),
    ),
    Case(
        "cli-shard-index-above-count",
        "cli",
        argv=["run", "default", "--shard", "3/2"],
        pattern=allof("--shard", r"\b3\b", r"1\.\.2|1 to 2|between 1 and 2"),
    ),
    Case(
        "cli-shard-index-zero",
        "cli",
        argv=["run", "default", "--shard", "0/4"],
        pattern=allof("--shard", r"\b0\b", r"1\.\.4|1 to 4|between 1 and 4"),
    ),
    Case(
        "cli-shard-not-numbers",
        "cli",
        argv=["run", "default", "--shard", "a/b"],
        pattern=allof("--shard", r"I/N", r"slurm/N"),
    ),
    Case(
        "cli-shard-slurm-without-task-id",
        "cli",
        argv=["run", "default", "--shard", "slurm/4"],
        setup=both(no_env("SLURM_ARRAY_TASK_ID"), no_env("SLURM_ARRAY_TASK_MIN")),
        pattern=allof("--shard", "SLURM_ARRAY_TASK_ID", r"sbatch --array|array job|I/N"),
    ),
    Case(
        "cli-scheduler-empty",
        "cli",
        argv=["run", "default", "--scheduler", ""],
        pattern=allof("--scheduler", r"tcp://"),
    ),
    Case(
        "cli-scheduler-with-space",
        "cli",
        argv=["run", "default", "--scheduler", "tcp://a b"],
        pattern=allof("--scheduler", "tcp://a b", r"give|like|e\.g\."),
    ),
    Case(
        "cli-workers-with-scheduler",
        "cli",
        argv=["run", "default", "--workers", "2", "--scheduler", "tcp://127.0.0.1:8786"],
        pattern=allof("--workers", "--scheduler", r"not allowed|one of|either|not both"),
    ),
    Case(
        "cli-out-is-a-file",
        "cli",
        argv=["run", "tiny.toml", "--out", "taken", "--workers", "1"],
        files={"tiny.toml": TINY, "taken": "a regular file\n"},
        pattern=allof(r"\btaken\b", r"not a directory|is a file|exists", r"--out|another|remove"),
    ),
    Case(
        "cli-out-cannot-be-created",
        "cli",
        argv=["run", "tiny.toml", "--out", "/proc/lmm-study-test/out", "--workers", "1"],
        files={"tiny.toml": TINY},
        pattern=allof(
            "/proc/lmm-study-test",
            r"cannot|could not|no such|not (be )?(created|writable)|permission|read-only",
            r"--out|another|check",
        ),
    ),
    Case(
        "cli-config-file-missing",
        "cli",
        argv=["run", "{tmp}/missing.toml", "--workers", "1"],
        pattern=allof(r"missing\.toml", r"no such file|not found|does not exist", r"give|preset"),
    ),
    Case(
        "cli-truth-config-missing",
        "cli",
        argv=["truth", "missing.toml"],
        pattern=allof(r"missing\.toml", r"no such file|not found|does not exist", r"give|preset"),
    ),
    Case(
        "cli-summarize-no-such-dir",
        "cli",
        argv=["summarize", "nowhere"],
        pattern=allof(r"\bnowhere\b", PROBLEM_DIR, r"give|study run"),
    ),
    Case(
        "cli-info-no-such-dir",
        "cli",
        argv=["info", "nowhere"],
        pattern=allof(r"\bnowhere\b", PROBLEM_DIR, r"give|study run"),
    ),
    Case(
        "cli-report-no-such-dir",
        "cli",
        argv=["report", "nowhere"],
        pattern=allof(r"\bnowhere\b", PROBLEM_DIR, r"give|study run"),
    ),
    Case(
        "cli-plot-no-such-dir",
        "cli",
        argv=["plot", "nowhere"],
        pattern=allof(r"\bnowhere\b", PROBLEM_DIR, r"give|study run"),
    ),
    Case(
        "cli-summarize-empty-dir",
        "cli",
        argv=["summarize", "emptydir"],
        setup=make_dir("emptydir"),
        pattern=allof(r"\bemptydir\b", r"no results|not a (run|results)", r"study run"),
    ),
    Case(
        "cli-summarize-unknown-measure",
        "cli",
        argv=["summarize", "run", "--measures", "nonsense"],
        setup=copy_run(),
        pattern=allof("--measures", "nonsense", r"choose from|one of", "coverage"),
    ),
    Case(
        "cli-summarize-unknown-reference",
        "cli",
        argv=["summarize", "run", "--reference", "bayes"],
        setup=copy_run(),
        pattern=allof("--reference", r"\bbayes\b", r"not an engine|not in", r"\breml\b"),
    ),
    Case(
        "cli-summarize-unknown-format",
        "cli",
        argv=["summarize", "run", "--format", "xml"],
        setup=copy_run(),
        pattern=allof("--format", "xml", r"choose from|one of", "csv"),
    ),
    Case(
        "cli-plot-unknown-figure",
        "cli",
        argv=["plot", "run", "--what", "nonsense"],
        setup=copy_run(),
        pattern=allof("--what", "nonsense", r"choose from|one of", "coverage"),
    ),
    Case(
        "cli-merge-without-dirs",
        "cli",
        argv=["merge"],
        pattern=allof("RUN_DIR", r"required|give"),
    ),
    # ---- CSV for `study fit`
    Case(
        "csv-file-missing",
        "csv",
        argv=["fit", "nope.csv", *FIT],
        pattern=allof(r"nope\.csv", r"not found|no such file|does not exist", r"give"),
    ),
    Case(
        "csv-missing-column",
        "csv",
        argv=["fit", "data.csv", "--y", "resp", "--x", "dosage", "--group", "school"],
        files={"data.csv": GOOD_CSV},
        pattern=allof(r"\bdosage\b", r"not in|no such|missing|not found", r"\bdose\b"),
    ),
    Case(
        "csv-nan-in-response",
        "csv",
        **fit_csv("nan.csv", csv_text(_with_row(3, ("", 2.0, "s0")))),
        pattern=allof(r"nan\.csv", r"\bresp\b", r"missing|NaN|empty", r"drop|remove|fill"),
    ),
    Case(
        "csv-non-numeric-predictor",
        "csv",
        **fit_csv("text.csv", csv_text(_with_row(7, (2.0, "high", "s1")))),
        pattern=allof(r"text\.csv", r"\bdose\b", r"numeric|number"),
    ),
    Case(
        "csv-infinite-response",
        "csv",
        **fit_csv("inf.csv", csv_text(_with_row(2, ("inf", 3.0, "s0")))),
        pattern=allof(r"inf\.csv", r"\bresp\b", r"non-finite|infinite|\binf\b", r"drop|remove"),
    ),
    Case(
        "csv-one-group",
        "csv",
        **fit_csv("onegroup.csv", csv_text([(r, d, "s0") for r, d, _ in GOOD_ROWS])),
        pattern=allof(r"\bschool\b", r"\b1 group|one group|only one", r"at least 2|two or more"),
    ),
    Case(
        "csv-one-row-per-group",
        "csv",
        **fit_csv(
            "onerow.csv", csv_text([(r, d, f"g{i}") for i, (r, d, _) in enumerate(GOOD_ROWS)])
        ),
        pattern=allof(
            r"\bschool\b",
            r"one row|1 row|single row|levels?|observations",
            r"more than one|at least|must be <|fewer",
        ),
    ),
    Case(
        "csv-constant-predictor",
        "csv",
        **fit_csv("constant.csv", csv_text([(r, 3.0, s) for r, _, s in GOOD_ROWS])),
        pattern=allof(r"\bdose\b", r"constant|collinear", r"drop|remove|vary"),
    ),
    Case(
        "csv-header-only",
        "csv",
        **fit_csv("header.csv", "resp,dose,school\n"),
        pattern=allof(r"header\.csv", r"no (data )?rows", r"add|give"),
    ),
    Case(
        "csv-empty-file",
        "csv",
        **fit_csv("empty.csv", ""),
        pattern=allof(r"empty\.csv", r"\bempty\b", r"give|header"),
    ),
    # any exception the formula library raises is one line (formulaic raises Python's
    # SyntaxError for a term that is not an expression); nothing is evaluated
    Case(
        "csv-formula-python-syntax",
        "csv",
        argv=["fit", "data.csv", "resp ~ dose + __import__('os').system('true') + (1 | school)"],
        files={"data.csv": GOOD_CSV},
        pattern=allof(r"formula", r"__import__", r"cannot be parsed|SyntaxError", r"e\.g\."),
    ),
    Case(
        "csv-formula-lambda",
        "csv",
        argv=["fit", "data.csv", "resp ~ dose + (lambda: 1)() + (1 | school)"],
        files={"data.csv": GOOD_CSV},
        pattern=allof(r"lambda", r"not supported|cannot be parsed|not in the data"),
    ),
    Case(
        "csv-formula-unbalanced-bracket",
        "csv",
        argv=["fit", "data.csv", "resp ~ dose + school[ + (1 | school)"],
        files={"data.csv": GOOD_CSV},
        pattern=allof(r"formula", r"school\["),
    ),
    # several grouping factors: lme4's checkNlevels / checkNobs, and engines that fit
    # one factor only (issue 27)
    Case(
        "csv-crossed-factor-with-one-level",
        "csv",
        argv=["fit", "data.csv", "resp ~ dose + (1 | school) + (1 | site)"],
        files={"data.csv": CROSSED_CSV},
        pattern=allof(r"data\.csv", r"'site' has 1 level", r"at least 2", r"drop its term"),
    ),
    Case(
        "csv-nested-factor-one-row-per-level",
        "csv",
        argv=["fit", "data.csv", "resp ~ dose + (1 | school/dose)"],
        files={"data.csv": CROSSED_CSV},
        pattern=allof(r"'dose:school' has 30 levels for 30 observations", r"checkNlevels"),
    ),
    Case(
        "csv-crossed-term-with-as-many-effects-as-rows",
        "csv",
        argv=["fit", "data.csv", "resp ~ dose + (1 | school) + (1 + dose | pair)"],
        files={"data.csv": CROSSED_CSV},
        pattern=allof(r"\(1 \+ dose \| pair\) has 30 random effects for 30", r"checkNobs"),
    ),
    Case(
        "csv-crossed-with-a-one-factor-engine",
        "csv",
        argv=["fit", "data.csv", "resp ~ dose + (1 | school) + (1 | pair)", "--engine", "ols"],
        files={"data.csv": CROSSED_CSV},
        pattern=allof(r"engine ols fits one grouping factor only", r"school, pair", r"use reml"),
    ),
    Case(
        "csv-semicolon-delimited",
        "csv",
        **fit_csv("semi.csv", csv_text(GOOD_ROWS, sep=";")),
        pattern=allof(r"semi\.csv", r"semicolon|delimit|separat|comma"),
    ),
    Case(
        "csv-huge-value",
        "csv",
        **fit_csv("huge.csv", csv_text(_with_row(4, (1e308, 5.0, "s0")))),
        expect_code=(1, 2),
        pattern=allof(
            r"\bresp\b|response|\by\b|overflow",
            r"large|overflow|finite|\binf\b|scale|extreme",
        ),
    ),
    Case(
        "csv-binary-file",
        "csv",
        **fit_csv("bin.csv", BINARY),
        pattern=allof(r"bin\.csv", r"CSV|text|binary", r"give|save|export|use"),
    ),
    Case(
        "csv-is-a-directory",
        "csv",
        argv=["fit", "datadir", *FIT],
        setup=make_dir("datadir"),
        pattern=allof(r"\bdatadir\b", r"directory|not a file", r"give"),
    ),
    Case(
        "csv-level-above-one",
        "csv",
        **fit_csv("data.csv", GOOD_CSV, "--level", "1.5"),
        pattern=allof("--level", r"1\.5", r"between 0 and 1|must"),
    ),
    Case(
        "csv-level-text",
        "csv",
        **fit_csv("data.csv", GOOD_CSV, "--level", "high"),
        pattern=allof("--level", "high", r"float|number|invalid"),
    ),
    Case(
        "csv-ci-with-bayes",
        "csv",
        **fit_csv("data.csv", GOOD_CSV, "--engine", "bayes", "--ci", "t"),
        pattern=allof("--ci", r"\breml\b", r"drop|remove|--engine reml"),
    ),
    Case(
        "csv-seed-past-64-bits",
        "csv",
        **fit_csv("data.csv", GOOD_CSV, "--seed", "18446744073709551616"),
        pattern=allof("--seed", "18446744073709551616", "whole number"),
    ),
    Case(
        "csv-option-of-another-engine",
        "csv",
        **fit_csv("data.csv", GOOD_CSV, "--engine", "gee", "--option", "ci=t"),
        pattern=allof("--ci", "not an option of engine gee", r"\breml\b"),
    ),
    Case(
        "csv-unknown-engine",
        "csv",
        **fit_csv("data.csv", GOOD_CSV, "--engine", "stan"),
        pattern=allof("--engine", "stan", r"choose from|one of", r"\breml\b"),
    ),
    Case(
        "csv-no-predictor",
        "csv",
        argv=["fit", "data.csv", "--y", "resp", "--x", ",", "--group", "school"],
        files={"data.csv": GOOD_CSV},
        pattern=allof("--x", r"at least one|give"),
    ),
    Case(
        "csv-group-option-missing",
        "csv",
        argv=["fit", "data.csv", "--y", "resp", "--x", "dose"],
        files={"data.csv": GOOD_CSV},
        pattern=allof("--group", r"required|give"),
    ),
    # ---- pilot CSV for `study design` (refused as `study fit` refuses it)
    Case(
        "pilot-file-missing",
        "csv",
        argv=["design", "nope.csv", PILOT, "-o", "p.toml"],
        pattern=allof(r"nope\.csv", r"not found", r"give"),
    ),
    Case(
        "pilot-semicolons",
        "csv",
        **design_csv("semi.csv", csv_text(GOOD_ROWS, sep=";")),
        pattern=allof(r"semi\.csv", r"semicolons", r"comma-separated"),
    ),
    Case(
        "pilot-constant-predictor",
        "csv",
        **design_csv("const.csv", csv_text([(r, 2.0, s) for r, _, s in GOOD_ROWS])),
        pattern=allof(r"const\.csv", r"\bdose\b", r"constant", r"drop"),
    ),
    Case(
        "pilot-formula-missing-column",
        "csv",
        argv=["design", "data.csv", "resp ~ dosage + (1 | school)", "-o", "p.toml"],
        files={"data.csv": GOOD_CSV},
        pattern=allof(r"\bdosage\b", r"not in the data", r"\bdose\b"),
    ),
    Case(
        "pilot-one-group",
        "cli",
        **design_csv("data.csv", GOOD_CSV, "--groups", "1"),
        pattern=allof("--groups 1", r">= 2", r"groups"),
    ),
    Case(
        "pilot-group-size-zero",
        "cli",
        **design_csv("data.csv", GOOD_CSV, "--group-size", "0"),
        pattern=allof("--group-size 0", r">= 2"),
    ),
    Case(
        "pilot-out-exists",
        "cli",
        argv=["design", "data.csv", PILOT, "-o", "p.toml"],
        files={"data.csv": GOOD_CSV, "p.toml": "# mine\n"},
        pattern=allof(r"p\.toml", "exists", "--overwrite"),
    ),
    # ---- damaged stores
    Case(
        "store-manifest-not-json-summarize",
        "store",
        argv=["summarize", "run"],
        setup=copy_run(damage=manifest_not_json),
        pattern=allof(r"manifest\.json", r"corrupt|not (valid )?JSON|damaged|invalid"),
    ),
    Case(
        "store-manifest-not-json-info",
        "store",
        argv=["info", "run"],
        setup=copy_run(damage=manifest_not_json),
        pattern=allof(r"manifest\.json", r"corrupt|not (valid )?JSON|damaged|invalid"),
    ),
    Case(
        "store-manifest-not-json-report",
        "store",
        argv=["report", "run"],
        setup=copy_run(damage=manifest_not_json),
        pattern=allof(r"manifest\.json", r"corrupt|not (valid )?JSON|damaged|invalid"),
    ),
    Case(
        "store-manifest-lacks-keys-info",
        "store",
        argv=["info", "run"],
        setup=copy_run(damage=manifest_empty_object),
        pattern=allof(r"manifest\.json", r"corrupt|lacks|missing|damaged|invalid"),
    ),
    Case(
        "store-truncated-results-only",
        "store",
        argv=["summarize", "run"],
        setup=copy_run(damage=only_truncated_results),
        pattern=allof(
            r"results\.nc",
            r"corrupt|damaged|truncated|cannot be read",
            r"study run|run the study|delete",
        ),
    ),
    Case(
        "store-truncated-piece-summarize",
        "store",
        argv=["summarize", "run"],
        setup=copy_run(damage=truncate_piece),
        pattern=allof(
            r"part-[\w-]+\.npz", r"damaged|corrupt|truncated|unreadable", r"study run", "--out"
        ),
    ),
    Case(
        "store-truncated-piece-report",
        "store",
        argv=["report", "run"],
        setup=copy_run(damage=truncate_piece),
        pattern=allof(
            r"part-[\w-]+\.npz", r"damaged|corrupt|truncated|unreadable", r"study run", "--out"
        ),
    ),
    Case(
        "store-garbage-piece-summarize",
        "store",
        argv=["summarize", "run"],
        setup=copy_run(damage=garbage_piece),
        pattern=allof(
            r"part-[\w-]+\.npz",
            r"damaged|corrupt|unreadable|not a checkpoint",
            r"study run",
            "--out",
        ),
    ),
    Case(
        "store-merge-with-non-run",
        "store",
        argv=["merge", "run", "notrun"],
        files={"notrun/notes.txt": "not a run\n"},
        setup=copy_run(),
        pattern=allof(r"\bnotrun\b", r"not a (results store|run)|no manifest", r"give|study run"),
    ),
    Case(
        "store-study-toml-invalid-summarize",
        "store",
        argv=["summarize", "run"],
        setup=copy_run(damage=study_toml_invalid),
        pattern=allof(
            r"study\.toml",
            r"not (a )?valid|corrupt|invalid|damaged",
            r"--overwrite|restore|study run",
        ),
    ),
    # -- precision targets: study run --mcse, study plan ----------------------------
    Case(
        "cli-mcse-unknown-measure",
        "cli",
        **run_config(TINY, "c.toml", "--mcse", "sharpness=0.01"),
        pattern=allof("--mcse", "sharpness", "choose from", "coverage", "bias"),
    ),
    Case(
        "cli-mcse-target-not-positive",
        "cli",
        **run_config(TINY, "c.toml", "--mcse", "coverage=-0.01"),
        pattern=allof("--mcse", "coverage=-0.01", "> 0"),
    ),
    Case(
        "cli-mcse-target-not-a-number",
        "cli",
        **run_config(TINY, "c.toml", "--mcse", "coverage=tight"),
        pattern=allof("--mcse", "coverage=tight", "number"),
    ),
    Case(
        "cli-mcse-missing-equals",
        "cli",
        **run_config(TINY, "c.toml", "--mcse", "coverage"),
        pattern=allof("--mcse", "MEASURE=TARGET"),
    ),
    Case(
        "cli-mcse-max-replicates-below-replicates",
        "cli",
        **run_config(TINY, "c.toml", "--mcse", "coverage=0.01", "--max-replicates", "2"),
        pattern=allof("--max-replicates 2", "below", r"\b3\b"),
    ),
    Case(
        "cli-max-replicates-without-mcse",
        "cli",
        **run_config(TINY, "c.toml", "--max-replicates", "20"),
        pattern=allof("--max-replicates", "only with --mcse"),
    ),
    Case(
        "cli-mcse-with-shard",
        "cli",
        **run_config(TINY, "c.toml", "--mcse", "coverage=0.01", "--shard", "1/2"),
        pattern=allof("--mcse", "--shard", "unsharded", "study plan"),
    ),
    Case(
        "cli-sbc-mcse",
        "cli",
        argv=["sbc", "c.toml", "--workers", "1", "--mcse", "coverage=0.01"],
        files={"c.toml": toml(engines='[engines]\nrun = ["bayes"]\n')},
        pattern=allof("--mcse", "simulation-based calibration", "no measure with a Monte Carlo"),
    ),
    Case(
        "store-plan-missing-run-dir",
        "store",
        argv=["plan", "nowhere", "--mcse", "coverage=0.01"],
        pattern=allof(r"\bnowhere\b", "no such run directory", "study run"),
    ),
    Case(
        "store-plan-manifest-not-json",
        "store",
        argv=["plan", "run", "--mcse", "coverage=0.01"],
        setup=copy_run(damage=manifest_not_json),
        pattern=allof(r"manifest\.json", r"parse|corrupt|damaged|not valid"),
    ),
    # ---- power studies and the sample-size search (issue 26)
    Case(
        "config-power-term-not-in-model",
        "config",
        argv=["power", "c.toml", "--workers", "1"],
        files={"c.toml": power_toml('terms = ["dose"]')},
        pattern=allof(r"power\.terms\b", "dose", "not a term of the model", "treat"),
    ),
    Case(
        "config-power-term-no-fixed-effect",
        "config",
        argv=["power", "c.toml", "--workers", "1"],
        files={"c.toml": power_toml('terms = ["sd__(Intercept)"]')},
        pattern=allof(r"power\.terms\b", "no fixed effect", "null twin"),
    ),
    Case(
        "config-power-alpha-outside",
        "config",
        argv=["power", "c.toml", "--workers", "1"],
        files={"c.toml": power_toml("alpha = 1.5")},
        pattern=allof(r"power\.alpha\b", "1.5", MUST, "< 1"),
    ),
    Case(
        "config-power-target-outside",
        "config",
        argv=["power", "c.toml", "--workers", "1"],
        files={"c.toml": power_toml("target = 0.0")},
        pattern=allof(r"power\.target\b", MUST, "> 0"),
    ),
    Case(
        "config-power-alpha-disagrees-with-level",
        "config",
        argv=["power", "c.toml", "--workers", "1"],
        files={"c.toml": power_toml("alpha = 0.1").replace("seed = 7", "seed = 7\nlevel = 0.95")},
        pattern=allof(r"power\.alpha\b", "level", "drop level|set it to 0.9"),
    ),
    Case(
        "config-power-test-no-engine-runs",
        "config",
        argv=["power", "c.toml", "--workers", "1"],
        files={"c.toml": power_toml('tests = ["bootstrap"]')},
        pattern=allof(r"power\.tests\b", "bootstrap", "kenward-roger"),
    ),
    Case(
        "cli-power-config-run-by-study-run",
        "cli",
        **run_config(power_toml("")),
        pattern=allof("power study", "study power"),
    ),
    Case(
        "cli-search-factor-not-integer-key",
        "cli",
        argv=["power", "c.toml", "--search", "sigma", "--workers", "1"],
        files={"c.toml": power_toml("")},
        pattern=allof("--search sigma", "not an integer design key", "groups"),
    ),
    Case(
        "cli-search-target-outside",
        "cli",
        argv=["power", "c.toml", "--search", "groups", "--target", "1.2"],
        files={"c.toml": power_toml("")},
        pattern=allof("--target", r"1\.2", r"\(0, 1\)"),
    ),
    Case(
        "cli-search-already-above-at-low",
        "cli",
        argv=[
            "power",
            "c.toml",
            "--search",
            "groups",
            "--low",
            "8",
            "--high",
            "40",
            "--replicates",
            "20",
            "--workers",
            "1",
        ],
        files={"c.toml": power_toml("").replace("treat = 0.3", "treat = 5.0")},
        pattern=allof("--low 8", "already", "above the target", "smaller --low"),
    ),
    Case(
        "cli-search-below-at-high",
        "cli",
        argv=[
            "power",
            "c.toml",
            "--search",
            "groups",
            "--low",
            "4",
            "--high",
            "8",
            "--replicates",
            "20",
            "--workers",
            "1",
        ],
        files={"c.toml": power_toml("").replace("treat = 0.3", "treat = 0.01")},
        pattern=allof("--high 8", "below the target", "larger --high"),
    ),
    Case(
        "cli-search-with-shard",
        "cli",
        argv=["power", "c.toml", "--search", "groups", "--shard", "1/2"],
        files={"c.toml": power_toml("")},
        pattern=allof("--search", "--shard", "--workers"),
    ),
    # ---- crossed designs (issue 27): lme4's checks, identification, the Latin square
    Case(
        "config-crossed-factor-one-level",
        "config",
        **run_config(crossed_toml(crossed="{ subj = 1, item = 16 }")),
        pattern=allof(r"design\.crossed\.subj\b", r">= 2|at least 2", "lme4"),
    ),
    Case(
        "config-crossed-slope-not-identified",
        "config",
        **run_config(
            crossed_toml(
                seen='"list"',
                random='"(1 + cond | subj) + (1 | item)"',
                re_sd="{ subj = [0.6, 0.3], item = 0.4 }",
            )
        ),
        pattern=allof(
            r"design\.random\b", "slope of cond by subj", "not identified", r"\(1 \| subj\)"
        ),
    ),
    Case(
        "config-crossed-more-random-effects-than-rows",
        "config",
        **run_config(
            crossed_toml(
                crossed="{ subj = 2, item = 2 }",
                fixed='"cond + x"',
                beta="[0.0, 0.3, 0.1]",
                random='"(1 + x | subj) + (1 | item)"',
                re_sd="{ subj = [0.6, 0.3], item = 0.4 }",
                design='[design.predictors.x]\ndistribution = "normal"\n',
            )
        ),
        pattern=allof(r"design\.random\b", "random effects for 4 observations", "checkNobs"),
    ),
    Case(
        "config-crossed-random-names-no-factor",
        "config",
        **run_config(crossed_toml(random='"(1 + cond | subj) + (1 | rater)"')),
        pattern=allof(r"design\.random\b", "rater", "not a factor of design.crossed", "subj, item"),
    ),
    Case(
        "config-crossed-re-sd-wrong-length",
        "config",
        **run_config(crossed_toml(re_sd="{ subj = [0.6], item = [0.4, 0.2] }")),
        pattern=allof(r"design\.re_sd\.subj\b", MUST, r"\b2 value", r"\(Intercept\), cond"),
    ),
    Case(
        "config-crossed-latin-square-does-not-divide-items",
        "config",
        **run_config(crossed_toml(crossed="{ subj = 8, item = 15 }")),
        pattern=allof(
            r"design\.crossed\.item\b", "15", "multiple of the 2 levels", r"\b14\b.*\b16\b"
        ),
    ),
    Case(
        "config-crossed-engine-fits-one-factor",
        "config",
        **run_config(crossed_toml(engines='[engines]\nrun = ["gee"]\n')),
        pattern=allof(r"engines\.run\[0\]", "gee", "one grouping factor", "subj, item"),
    ),
]

# -- the module's small real run ---------------------------------------------------------

REAL_RUN_CONFIG = """\
name = "tiny"
replicates = 3
seed = 7

[design]
groups = 6
group_size = 5

[engines]
run = ["reml"]
"""


@pytest.fixture(scope="module")
def real_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small finished run (REML, 3 replicates, K = 6 groups of 5), made once."""
    base = tmp_path_factory.mktemp("real-run")
    config = base / "tiny.toml"
    config.write_text(REAL_RUN_CONFIG)
    out = base / "run"
    code = main(["run", str(config), "--out", str(out), "--workers", "1"])
    assert code == 0
    assert (out / "manifest.json").is_file() and (out / "results.nc").is_file()
    assert list((out / "checkpoints").glob("part-*.npz"))
    return out


# -- checks ------------------------------------------------------------------------------


def snapshot(root: Path) -> dict[str, tuple[int, str] | str]:
    """Every directory and file under ``root``: relative path -> "dir" or (size, sha256)."""
    tree: dict[str, tuple[int, str] | str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        for d in dirnames:
            tree[str((here / d).relative_to(root))] = "dir"
        for f in filenames:
            path = here / f
            rel = str(path.relative_to(root))
            if path.is_symlink() or not path.is_file():
                tree[rel] = f"special:{os.readlink(path) if path.is_symlink() else ''}"
                continue
            data = path.read_bytes()
            tree[rel] = (len(data), hashlib.sha256(data).hexdigest())
    return tree


#: warning categories a Python process hides by default (the rest reach stderr)
QUIET_WARNINGS = (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning)


def _run(argv: list[str]) -> int:
    try:
        return int(main(argv))
    except SystemExit as exc:  # argparse
        code = exc.code
        if code is None:
            return 0
        return code if isinstance(code, int) else 1


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(
    case: Case,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    request: pytest.FixtureRequest,
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "100")
    for rel, content in case.files.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    if case.setup is not None:
        case.setup(Ctx(tmp_path, monkeypatch, lambda: request.getfixturevalue("real_run")))
    argv = [a.replace("{tmp}", str(tmp_path)) for a in case.argv]
    before = snapshot(tmp_path)
    capsys.readouterr()

    with warnings.catch_warnings(record=True) as caught:
        # what a fresh `study` process shows on stderr (Python's default filters)
        warnings.simplefilter("default")
        for quiet in QUIET_WARNINGS:
            warnings.simplefilter("ignore", quiet)
        code = _run(argv)

    out, err = capsys.readouterr()
    err += "".join(
        warnings.formatwarning(w.message, w.category, w.filename, w.lineno, w.line) for w in caught
    )
    shown = f"exit {code}\nstdout: {out!r}\nstderr: {err!r}"
    assert "Traceback" not in out + err, shown
    allowed = case.expect_code if isinstance(case.expect_code, tuple) else (case.expect_code,)
    assert code in allowed, shown
    assert out == "", shown
    lines = err.splitlines()
    assert len(lines) == 1 and err.endswith("\n") and lines[0].strip(), shown
    line = lines[0]
    assert line.startswith("study"), shown
    assert re.search(case.pattern, line, re.IGNORECASE), f"{shown}\npattern: {case.pattern}"
    assert snapshot(tmp_path) == before, f"{shown}\nthe working directory changed"


def test_corpus_covers_every_category() -> None:
    assert len(CASES) >= 48
    ids = [c.id for c in CASES]
    assert len(set(ids)) == len(ids), "case ids must be unique"
    counts = {cat: sum(c.category == cat for c in CASES) for cat in CATEGORIES}
    assert all(n >= 1 for n in counts.values()), counts
    assert {c.category for c in CASES} <= set(CATEGORIES)
    for c in CASES:
        re.compile(c.pattern)
        assert c.expect_code in (1, 2, (1, 2)), c.id


def test_one_group_of_one_row_among_others_is_fitted_as_lme4_does(tmp_path, capsys):
    """Only data where *every* group has one row are refused (lme4: the number of
    levels must be < the number of observations); a single one-row group is data."""
    rows = [*GOOD_ROWS, (GOOD_ROWS[0][0], 4.0, "lonely")]
    path = tmp_path / "lonely.csv"
    path.write_text(csv_text(rows))
    assert main(["fit", str(path), *FIT]) == 0
    out = capsys.readouterr().out
    assert "(Intercept)" in out and "dose" in out
