"""A coverage study of a crossed design runs end to end: generated CrossedData reach the
engines (each on the structure it is configured to fit), results carry the crossed
term names and the analytic truth, a run resumes, and the summary and truth tables
read it: with the test's stand-in engine (:class:`helpers.CrossedOls`, whose numbers
are checked against the replicates' own data), and a tiny study of the crossed REML
engine from the command line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from helpers import crossed_ols_spec

from models.registry import default_registry
from study.cli.main import main
from study.design.config import load_config
from study.design.generate import CrossedDesign, design_of
from study.design.truth import compute_truth
from study.run.results import open_results
from study.usecases.analysing import summarize
from study.usecases.running import run
from study.usecases.truth import truth

STUDY = """
name = "crossed"
seed = 9
replicates = 6

[design]
crossed = { subj = 8, item = 6 }
fixed = "cond + x"
beta = { "(Intercept)" = 0.2, cond = 0.3, x = 0.1 }
random = "(1 + cond | subj) + (1 + cond | item)"
re_sd = { subj = [0.6, 0.3], item = [0.4, 0.2] }
re_cor = { subj = 0.3 }

[design.predictors.cond]
distribution = "latin_square"
levels = [-0.5, 0.5]

[design.predictors.x]
distribution = "normal"

[engines]
run = ["crossed_ols", "crossed_ols-int"]

[engines.crossed_ols-int]
random = "(1 | subj) + (1 | item)"

[conditions]
"crossed.subj" = [8, 12]
"""


def test_a_coverage_study_of_a_crossed_design_runs_end_to_end(tmp_path: Path):
    spec = crossed_ols_spec()
    path = tmp_path / "crossed.toml"
    path.write_text(STUDY)
    report = run(path, tmp_path / "run", workers=1, register=[spec])
    assert report.complete and report.failures == 0
    ds = open_results(report.path, register=[spec])
    config = load_config(path, default_registry().with_engines(spec))
    terms = config.terms()[0]
    assert list(ds.term.values) == terms
    assert "cor__(Intercept).cond|subj" in terms and "sd__cond|item" in terms
    for i, c in enumerate(config.conditions):
        design = design_of(config, c)
        assert isinstance(design, CrossedDesign)
        expected = compute_truth(design, terms)
        cell = ds.isel(condition=i)
        np.testing.assert_allclose(cell.true_se.values, expected.se, rtol=1e-12)
        np.testing.assert_allclose(cell.true_value.values, expected.value, rtol=1e-12)
        # each replicate's own data reached the engine (OLS of its y on its X)
        for r in (0, 5):
            data = design.sample(r).data
            beta = np.linalg.lstsq(data.X, data.y, rcond=None)[0]
            got = cell.estimate.sel(
                replicate=r, engine="crossed_ols", term=["(Intercept)", "cond", "x"]
            )
            np.testing.assert_allclose(got, beta, rtol=1e-10)
    assert int(ds.nobs.isel(condition=1, replicate=0, engine=0)) == 12 * 6
    # the intercepts-only engine has no slope terms: NaN there, its own fixed effects
    reduced = ds.sel(engine="crossed_ols-int")
    assert np.isfinite(reduced.estimate.sel(term="cond")).all()
    again = run(path, tmp_path / "run", workers=1, register=[spec])
    assert again.new == 0 and again.complete
    text = summarize(report.path, register=[spec]).text
    assert "sd__(Intercept)|subj" in text and "crossed.subj" in text
    table = truth(config)
    assert "crossed subj = 8 x item = 6" in table.design
    assert table.models == [
        "generating model: y ~ cond + x + (1 + cond | subj) + (1 + cond | item)",
        "engine crossed_ols-int fits: y ~ cond + x + (1 | subj) + (1 | item)",
    ]
    assert len(table.frame) == 2 * len(terms)


REML_STUDY = """
name = "crossed-reml"
seed = 27
replicates = 20

[design]
crossed = { subj = 12, item = 8 }
fixed = "cond"
beta = { "(Intercept)" = 0.0, cond = 0.0 }
random = "(1 + cond | subj) + (1 + cond | item)"
re_sd = { subj = [0.6, 0.3], item = [0.4, 0.2] }
re_cor = { subj = 0.3, item = 0.2 }

[design.predictors.cond]
distribution = "latin_square"
levels = [-0.5, 0.5]

[engines]
run = ["reml", "reml-int"]

[engines.reml-int]
random = "(1 | subj) + (1 | item)"

[conditions]
"beta.cond" = [0.0, 0.4]
"""


def test_a_tiny_crossed_study_with_reml_from_the_command_line(tmp_path: Path, capsys):
    path = tmp_path / "crossed.toml"
    path.write_text(REML_STUDY)
    out = tmp_path / "run"
    # gee fits one grouping factor: refused for a crossed design, before anything is written
    assert main(["run", str(path), "--out", str(out), "--workers", "1", "--engines", "gee"]) == 2
    assert "gee fits one grouping factor" in capsys.readouterr().err and not out.exists()
    argv = ["run", str(path), "--out", str(out), "--workers", "1", "--engines", "reml,reml-int"]
    assert main(argv) == 0
    ds = open_results(out)
    assert ds.sizes == {"condition": 2, "replicate": 20, "engine": 2, "term": 9}
    fixed = ds.sel(term=["(Intercept)", "cond"])
    assert bool(ds.converged.all()) and np.isfinite(fixed.std_error).all()
    # the intercepts-only model has no slope terms; its SE of cond is its own
    assert np.isnan(ds.estimate.sel(engine="reml-int", term="sd__cond|subj")).all()
    capsys.readouterr()
    assert main(["summarize", str(out)]) == 0
    text = capsys.readouterr().out
    assert "cor__(Intercept).cond|subj" in text and "coverage" in text
    assert main(["truth", str(path)]) == 0
    text = capsys.readouterr().out
    assert "crossed subj = 12 x item = 8" in text and "engine reml-int fits" in text
    assert "0.232737" in text  # the analytic SE of cond
