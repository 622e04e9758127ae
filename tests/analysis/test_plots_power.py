"""The power figure (study/analysis/plots/power.py) on synthetic power summaries: what it
draws is read back from its artists and checked against the summary."""

from __future__ import annotations

import itertools
import json
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xarray as xr
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure

from study.analysis import mcse as mnp
from study.analysis.plots import power

Z = 1.959963984540054
SIX = ["reml/z", "reml/kenward-roger", "reml/lrt", "gee/wald", "bayes/interval", "bayes/sign"]


def summary_of(
    factors: dict[str, list[Any]],
    tests: list[str],
    *,
    terms: tuple[str, ...] = ("treat",),
    n: int = 500,
    failed: tuple[str, ...] = (),
    alpha: float = 0.05,
    target: float = 0.8,
) -> xr.Dataset:
    """A power summary with the layout of the ``power`` study kind: power rising with
    the first numeric factor (and ``beta.treat`` when it is one), each test a little
    apart; the tests in ``failed`` NaN (n = 0) everywhere."""
    names = list(factors)
    combos = list(itertools.product(*factors.values())) or [()]
    nc, nt, nm = len(combos), len(tests), len(terms)
    rejection = np.zeros((nc, 2, nt, nm))
    for c, combo in enumerate(combos):
        level = dict(zip(names, combo, strict=True))
        size = float(level.get("groups", 20)) * float(level.get("beta.treat", 0.3)) / 0.3
        icc = float(level.get("icc", 0.1))
        for j in range(nt):
            shift = 0.6 * j / max(nt - 1, 1) - 0.3
            rejection[c, 0, j, :] = 1 / (1 + math.exp(-(size - 18) / (5 + 20 * icc) - shift))
            rejection[c, 1, j, :] = alpha * (1 + 0.4 * shift) + 0.01 * (c % 2)
    counts = np.full(rejection.shape, float(n))
    for j, t in enumerate(tests):
        if t in failed:
            rejection[:, :, j, :], counts[:, :, j, :] = np.nan, 0.0
    lo, hi = mnp.wilson_interval(rejection, counts)
    labels = [", ".join(f"{f}={v}" for f, v in zip(names, c, strict=True)) for c in combos]
    coords: dict[str, Any] = {
        "condition": labels or ["base"],
        "hypothesis": ["alternative", "null"],
        "test": tests,
        "term": list(terms),
        "test_engine": ("test", [t.split("/")[0] for t in tests]),
        "test_method": ("test", [t.split("/")[1] for t in tests]),
    }
    for i, f in enumerate(names):
        coords[f] = ("condition", [c[i] for c in combos])
    dims = ("condition", "hypothesis", "test", "term")
    with np.errstate(invalid="ignore"):
        se = np.sqrt(rejection * (1 - rejection) / counts)
    return xr.Dataset(
        {
            "rejection": (dims, rejection),
            "mcse": (dims, se),
            "lower": (dims, lo),
            "upper": (dims, hi),
            "n": (dims, counts),
        },
        coords=coords,
        attrs={"factors": json.dumps(names), "alpha": alpha, "target": target},
    )


ONE = {"groups": [6, 10, 15, 20, 30, 40]}
TWO = {"groups": [6, 10, 15, 20, 30, 40], "icc": [0.05, 0.2]}


def _built(summary: xr.Dataset, path: Path | None = None, **kw: Any) -> Figure:
    """The figure drawn and saved with every warning an error."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fig = power.power_figure(summary, **kw)
        if path is not None:
            fig.savefig(path, dpi=60)
            assert path.stat().st_size > 1000
        else:
            FigureCanvasAgg(fig).draw()  # lays it out as saving would
    return fig


def _tests(ax: Any, gid: str) -> dict[str, Any]:
    prefix = f"{gid}|"
    return {
        ln.get_gid()[len(prefix) :]: ln
        for ln in ax.lines
        if (ln.get_gid() or "").startswith(prefix)
    }


def _hline(ax: Any, gid: str) -> float:
    (line,) = [ln for ln in ax.lines if ln.get_gid() == gid]
    ys = set(np.asarray(line.get_ydata(), dtype=float))
    assert len(ys) == 1
    return ys.pop()


def test_one_factor_draws_a_line_per_test_along_the_factor(tmp_path):
    s = summary_of(ONE, [*SIX, "reml/satterthwaite"], failed=("reml/satterthwaite",))
    fig = _built(s, tmp_path / "one.png")
    power_ax, type1_ax = fig.axes
    assert len(fig.legends) == 1 and not power_ax.get_legend()
    for ax, gid, hyp in ((power_ax, "power", "alternative"), (type1_ax, "type1", "null")):
        lines = _tests(ax, gid)
        assert set(lines) == set(SIX)  # the failed test is not drawn
        for t, line in lines.items():
            want = s["rejection"].sel(hypothesis=hyp, test=t, term="treat").values
            assert np.allclose(line.get_ydata(), want)
            x = np.asarray(line.get_xdata(), dtype=float)
            assert np.allclose(x, ONE["groups"], atol=0.2 * 4 / 2 + 1e-9)  # dodged a little
        assert ax.get_xlabel() == "groups"
        assert "Wilson" in ax.get_ylabel()
    assert _hline(power_ax, "target") == pytest.approx(0.8)
    assert _hline(type1_ax, "alpha") == pytest.approx(0.05)
    texts = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "target 0.8" in texts and "alpha 0.05" in texts
    assert "reml/satterthwaite (no valid test)" in texts
    assert "treat" in fig.get_suptitle() and "groups" in fig.get_suptitle()


def test_bands_are_the_wilson_intervals_and_the_monte_carlo_band_of_alpha():
    s = summary_of(ONE, SIX, n=400)
    fig = _built(s)
    power_ax, type1_ax = fig.axes
    for ax, gid, hyp in ((power_ax, "power", "alternative"), (type1_ax, "type1", "null")):
        bands = {
            c.get_gid().split("|")[1]: c
            for c in ax.collections
            if isinstance(c, PolyCollection) and (c.get_gid() or "").startswith(f"{gid}-band|")
        }
        assert set(bands) == set(SIX)
        for t, band in bands.items():
            ys = band.get_paths()[0].vertices[:, 1]
            x = s.sel(hypothesis=hyp, test=t, term="treat")
            assert ys.min() == pytest.approx(float(x["lower"].min()))
            assert ys.max() == pytest.approx(float(x["upper"].max()))
    (mc,) = [p for p in type1_ax.patches if p.get_gid() == "mc-band"]
    half = Z * math.sqrt(0.05 * 0.95 / 400)
    ys = np.array([mc.get_y(), mc.get_y() + mc.get_height()])
    assert ys.min() == pytest.approx(0.05 - half) and ys.max() == pytest.approx(0.05 + half)
    assert any("n = 400" in t.get_text() for t in fig.legends[0].get_texts())


def test_two_factors_make_a_row_per_level_of_the_other(tmp_path):
    s = summary_of(TWO, SIX)
    fig = _built(s, tmp_path / "two.png")
    assert len(fig.axes) == 4  # (power, type I error) x 2 icc levels
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == [
        "Power | icc = 0.05",
        "Type I error | icc = 0.05",
        "Power | icc = 0.2",
        "Type I error | icc = 0.2",
    ]
    for ax in fig.axes:
        assert len(_tests(ax, "power" if ax.get_title().startswith("Power") else "type1")) == 6
    row = s.sel(hypothesis="alternative", term="treat", test="gee/wald")
    want = row["rejection"].values[np.asarray(s["icc"].values) == 0.2]
    assert np.allclose(_tests(fig.axes[2], "power")["gee/wald"].get_ydata(), want)
    # the factor along x chosen: icc, a row per number of groups
    fig = power.power_figure(s, factor="icc")  # not drawn: 6 rows are slow to lay out
    assert len(fig.axes) == 12 and fig.axes[-1].get_xlabel() == "icc"
    assert fig.axes[0].get_title() == "Power | groups = 6"


def test_no_factor_puts_the_tests_along_x():
    s = summary_of({}, [*SIX, "reml/t"], failed=("reml/t",))
    assert s.sizes["condition"] == 1
    fig = _built(s)
    power_ax, type1_ax = fig.axes
    labels = [t.get_text() for t in power_ax.get_xticklabels()]
    assert labels == [*SIX, "reml/t"]
    lines = _tests(power_ax, "power")
    assert set(lines) == set(SIX)
    assert [float(lines[t].get_xdata()[0]) for t in SIX] == list(range(6))
    assert _hline(power_ax, "target") == pytest.approx(0.8)
    assert _hline(type1_ax, "alpha") == pytest.approx(0.05)


def test_a_constant_factor_is_neither_along_x_nor_a_row():
    s = summary_of({"groups": [10, 20, 30], "icc": [0.1]}, SIX)
    fig = _built(s)
    assert len(fig.axes) == 2 and fig.axes[0].get_xlabel() == "groups"


def test_other_target_alpha_and_term():
    s = summary_of(ONE, SIX, terms=("(Intercept)", "treat", "x"), alpha=0.1, target=0.9)
    fig = _built(s, term="x")
    assert _hline(fig.axes[0], "target") == pytest.approx(0.9)
    assert _hline(fig.axes[1], "alpha") == pytest.approx(0.1)
    assert "of x" in fig.get_suptitle()
    assert "of treat" in _built(s).get_suptitle()  # default: the first non-intercept term


def test_refuses_an_unknown_factor_or_term():
    s = summary_of(TWO, SIX)
    with pytest.raises(ValueError, match=r"factor 'size'.*factor= one of \['groups', 'icc'\]"):
        power.power_figure(s, factor="size")
    with pytest.raises(ValueError, match=r"term 'x'.*term= one of \['treat'\]"):
        power.power_figure(s, term="x")
    with pytest.raises(ValueError, match="none: leave factor=None"):
        power.power_figure(summary_of({}, SIX), factor="groups")
    with pytest.raises(ValueError, match="factor 'size'"):
        power.power_caption(s, "size", None)
    with pytest.raises(ValueError, match="not a power summary"):
        power.power_figure(s.drop_vars("upper"))


def test_many_tests_keep_one_legend_below_the_panels():
    engines = ["reml", "bayes", "gee", "ml", "glmm", "nlme", "brms", "inla"]
    methods = ["z", "t", "satterthwaite", "kenward-roger", "lrt"]
    tests = [f"{e}/{m}" for e in engines for m in methods]
    fig = _built(summary_of(TWO, tests))
    renderer = FigureCanvasAgg(fig).get_renderer()
    box = fig.legends[0].get_window_extent(renderer)
    assert fig.bbox.x0 <= box.x0 and box.x1 <= fig.bbox.x1  # not cut at the edges
    for ax in fig.axes:
        assert not box.overlaps(ax.get_tightbbox(renderer))
        assert len(_tests(ax, "power") or _tests(ax, "type1")) == len(tests)
        assert not [c for c in ax.collections if "band|" in (c.get_gid() or "")]  # bars
        assert ax.get_ylabel().endswith("95% Wilson interval")
    styles = {
        (ln.get_color(), ln.get_marker(), str(ln.get_linestyle()))
        for ln in fig.legends[0].get_lines()
    }
    assert len(styles) >= len(tests)  # every test its own look


def test_several_conditions_without_factors_make_a_row_each():
    s = summary_of({"groups": [6, 10]}, SIX)
    s.attrs["factors"] = "[]"
    fig = _built(s)
    assert len(fig.axes) == 4
    assert fig.axes[0].get_title() == "Power | groups=6"
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == SIX


def test_caption_names_the_term_factor_target_and_alpha():
    s = summary_of(TWO, SIX)
    text = power.power_caption(s, None, None)
    assert text.count(".") == 1 or text.endswith(".")
    for part in ("treat", "against groups", "row per icc", "0.8", "alpha = 0.05", "n = 500"):
        assert part in text
    assert "by test" in power.power_caption(summary_of({}, SIX), None, None)


def test_module_never_uses_pyplot():
    source = Path(power.__file__).read_text()
    assert "import matplotlib.pyplot" not in source and "plt." not in source
