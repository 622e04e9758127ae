"""The power study: every test of every engine on each replicate and on its null twin.

A pair (condition c, replicate r) generates replicate r of c's design (the seed
policy, as a coverage study), then its *null twin*: the same rows, X, random effects,
residuals and missing outcomes with the tested effects at their null values
(``y0 = y - X_T (beta_T - null_T)``; the twin is the condition's own replicate, so
power and type I error are read on the same draws).  Each engine fits both and runs
its tests of ``H0: beta_t = null_t`` for every tested term (:mod:`study.design.power`):
the tests it declares (:class:`models.base.Testing`), else a Wald test from its
estimate, SE and reference df.  The Dataset (``power.nc``) has the axes
``hypothesis`` ("alternative": the data; "null": the twin) and ``test``
(``engine/method``), and carries the analytic true SE of the tested terms.
"""

from __future__ import annotations

import json
import time
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import stats

from models.base import FitResult, TestResult
from models.data import LMMData
from models.structure import Structure
from study.design.conditions import factor_names
from study.design.generate import Design
from study.design.power import WALD, PowerSettings, power_settings, test_label, tests_of
from study.design.seeds import engine_seed
from study.design.truth import compute_truth
from study.run.fitting import fit_recorded, stop_if_failed, where
from study.run.kinds.base import PairOutput, factor_coords
from study.run.store import Layout
from study.schema import HYPOTHESES, POWER_SCHEMA

if TYPE_CHECKING:
    from models.base import Engine
    from study.design.config import StudyConfig
    from study.design.generate import AnyDesign

#: the results file of a power run
POWER_RESULTS = "power.nc"


def null_twin(data: LMMData, columns: Sequence[int], shift: np.ndarray) -> LMMData:
    """``data`` with the tested effects moved to the null: ``y - X[:, columns] shift``
    (``shift = beta - null`` of the tested columns); X, groups and structure kept."""
    y = data.y - data.X[:, list(columns)] @ np.asarray(shift, dtype=float)
    return LMMData(
        y, data.X, data.group, data.predictors, data.group_labels, structure=data.structure
    )


def wald_test(fit: FitResult, terms: Sequence[str], null: Sequence[float]) -> TestResult:
    """The Wald test of an engine without tests of its own: ``(estimate - null) / SE``
    against a t distribution with the fit's ``df`` (the normal when infinite or
    missing), which rejects exactly when the engine's two-sided interval at the same
    level excludes the null."""
    idx = [fit.terms.index(t) for t in terms]
    est = np.asarray(fit.estimate, dtype=float)[idx]
    se = np.asarray(fit.std_error, dtype=float)[idx]
    df = np.asarray(fit.df, dtype=float)[idx]
    df = np.where(np.isnan(df), np.inf, df)
    with np.errstate(all="ignore"):
        z = (est - np.asarray(null, dtype=float)) / se
        p = np.where(np.isinf(df), 2 * stats.norm.sf(np.abs(z)), 2 * stats.t.sf(np.abs(z), df))
    ok = np.isfinite(z) & (se > 0)
    p = np.where(ok, p, np.nan)
    return TestResult(statistic=np.where(ok, z, np.nan), df=df, p_value=p, message="")


def _tests_recorded(
    engine: Engine,
    data: LMMData,
    methods: Sequence[str],
    settings: PowerSettings,
    seed: int,
    declares: bool,
) -> tuple[FitResult, dict[str, TestResult]]:
    """One engine's fit and tests on ``data``, with the runner's error policy: an
    exception becomes a failed fit with NaN tests."""
    terms, null = list(settings.terms), list(settings.nulls)
    if declares:
        t0 = time.perf_counter()
        try:
            fit, results = engine.fit_tests(  # type: ignore[attr-defined]
                data, terms=terms, null=null, tests=list(methods), seed=seed
            )
        except Exception as err:  # errors are data, never a crashed study
            fit = FitResult.failed(
                data.structure,
                f"{type(err).__name__}: {err}",
                time.perf_counter() - t0,
                traceback.format_exc(),
            )
            results = {}
        return fit, results
    fit = fit_recorded(engine, data, data.structure, seed=seed)
    return fit, {WALD: wald_test(fit, terms, null)} if WALD in methods else {}


class Power:
    """The power study (``study power``): see the module docstring."""

    name = "power"
    layout = Layout(POWER_RESULTS, POWER_SCHEMA, "study power", "--replicates")
    what = "a power study"

    def claims(self, config: StudyConfig) -> bool:
        return power_settings(config) is not None

    def recognises(self, path: Path) -> bool:
        return (path / POWER_RESULTS).is_file()

    def default_out(self, config: StudyConfig) -> Path:
        return Path("outputs") / config.name

    def terms(self, config: StudyConfig) -> tuple[list[str], list[str]]:
        settings = power_settings(config)
        assert settings is not None
        return list(settings.terms), ["fixed"] * len(settings.terms)

    def context(self, config: StudyConfig, design_of: Any) -> dict[str, Any]:
        """The analytic truth of the tested terms of every condition, by id."""
        terms = self.terms(config)[0]
        out = {}
        for c in config.conditions:
            design = design_of(c.id)
            truth = compute_truth(design)
            every = list(design.config.structure.terms)
            pick = [every.index(t) for t in terms]
            out[c.id] = {"value": truth.value[pick], "se": truth.se[pick]}
        return out

    def run_pair(
        self,
        config: StudyConfig,
        design: AnyDesign,
        engines: Sequence[Engine],
        replicate: int,
        fail_fast: bool,
    ) -> PairOutput:
        """Replicate ``replicate`` of ``design`` and its null twin, every test of every
        engine on both."""
        settings = power_settings(config)
        assert settings is not None
        # (a crossed design is refused for power studies when the configuration is loaded)
        assert isinstance(design, Design), "power study of a crossed design"
        sample = design.sample(replicate)
        assert isinstance(sample.data, LMMData)
        fixed = list(design.config.structure.fixed)
        columns = [fixed.index(t) for t in settings.terms]
        shift = design.beta[columns] - np.array(settings.nulls)
        datasets = {"alternative": sample.data, "null": null_twin(sample.data, columns, shift)}
        tests = tests_of(config)
        t, e, k = len(tests), len(config.engines), len(settings.terms)
        h = len(HYPOTHESES)
        values: dict[str, np.ndarray] = {
            "p_value": np.full((h, t, k), np.nan),
            "reject": np.full((h, t, k), np.nan),
            "statistic": np.full((h, t, k), np.nan),
            "df": np.full((h, t, k), np.nan),
            "estimate": np.full((h, e, k), np.nan),
            "std_error": np.full((h, e, k), np.nan),
            "converged": np.zeros((h, e), dtype=bool),
            "singular": np.zeros((h, e), dtype=bool),
            "fit_seconds": np.full((h, e), np.nan),
            "message": np.full((h, e), "", dtype=object),
        }
        alpha = settings.level_alpha
        for hi, hyp in enumerate(HYPOTHESES):
            for ei, (label, engine) in enumerate(zip(config.engines, engines, strict=True)):
                if hyp == "null" and not settings.twins:
                    values["message"][hi, ei] = "not run: the null twins are off (twins = false)"
                    continue
                data = datasets[hyp]
                structure = config.structure_of(label)
                assert isinstance(structure, Structure)
                if structure != data.structure:  # a misspecified fit: same data, other Z
                    data = data.with_structure(structure)
                methods = [m for (name, m) in tests if name == label]
                seed = engine_seed(config.seed, design.id, replicate, label)
                declares = bool(config.registry.tests_of(label))
                fit, results = _tests_recorded(engine, data, methods, settings, seed, declares)
                if fail_fast:
                    at = where(config, design.id, "replicate", replicate)
                    stop_if_failed(fit, label, f"{at} ({hyp} hypothesis)")
                idx = [fit.terms.index(term) for term in settings.terms]
                values["estimate"][hi, ei] = np.asarray(fit.estimate, dtype=float)[idx]
                values["std_error"][hi, ei] = np.asarray(fit.std_error, dtype=float)[idx]
                values["converged"][hi, ei] = bool(fit.converged)
                values["singular"][hi, ei] = bool(fit.singular)
                values["fit_seconds"][hi, ei] = float(fit.fit_seconds)
                notes = [fit.message] if fit.message else []
                for method in methods:
                    ti = tests.index((label, method))
                    result = results.get(method)
                    if result is None:
                        notes.append(f"{method}: not computed")
                        continue
                    p = np.asarray(result.p_value, dtype=float)
                    values["p_value"][hi, ti] = p
                    values["statistic"][hi, ti] = np.asarray(result.statistic, dtype=float)
                    values["df"][hi, ti] = np.asarray(result.df, dtype=float)
                    decided = result.reject
                    if decided is None:
                        decided = np.where(np.isnan(p), np.nan, (p < alpha).astype(float))
                    values["reject"][hi, ti] = np.asarray(decided, dtype=float)
                    if result.message:
                        notes.append(f"{method}: {result.message}")
                values["message"][hi, ei] = "; ".join(dict.fromkeys(notes))
        values["message"] = values["message"].astype(np.str_)
        return PairOutput(values)

    def axes(self, config: StudyConfig) -> dict[str, int]:
        return {"hypothesis": len(HYPOTHESES), "test": len(tests_of(config))}

    def coords(self, config: StudyConfig, context: Mapping[str, Any]) -> dict[str, Any]:
        """Factors on ``condition``; hypothesis and test labels; the tested terms'
        null values and the analytic truth on (condition, term)."""
        settings = power_settings(config)
        assert settings is not None
        conditions = config.conditions
        coords: dict[str, Any] = factor_coords(conditions)
        tests = tests_of(config)
        coords["hypothesis"] = (
            "hypothesis",
            np.array(HYPOTHESES, dtype=object),
            {
                "description": "alternative: the replicate's data; null: its null twin, the "
                "same draws with the tested effects at their null values"
            },
        )
        coords["test"] = np.array([test_label(e, m) for e, m in tests], dtype=object)
        coords["test_engine"] = ("test", np.array([e for e, _ in tests], dtype=object))
        coords["test_method"] = ("test", np.array([m for _, m in tests], dtype=object))
        coords["null_value"] = (
            "term",
            np.array(settings.nulls, dtype=float),
            {"description": "the value H0 puts the term at (the null twin's effect)"},
        )
        for name, what in (("true_value", "value"), ("true_se", "se")):
            coords[name] = (
                ("condition", "term"),
                np.stack([np.asarray(context[c.id][what]) for c in conditions]),
                {"description": f"marginal true {what} of the tested term (GLS, known V)"},
            )
        return coords

    def attrs(self, config: StudyConfig, manifest: Mapping[str, Any]) -> dict[str, Any]:
        settings = power_settings(config)
        assert settings is not None
        return {
            "factors": json.dumps(factor_names(config.conditions)),
            "alpha": settings.level_alpha,
            "target": settings.target,
        }


POWER = Power()
