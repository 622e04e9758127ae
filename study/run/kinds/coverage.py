"""The coverage study: every engine fits each replicate; results against the truth.

A pair (condition c, replicate r) generates replicate r of c's design (its X fixed,
its random effects and noise from the pair's stream: the seed policy), fits it with
every engine of the study (each on the structure it is configured to fit), and
stores every fit's per-term and per-fit fields (:data:`study.schema.COVERAGE_SCHEMA`)
and, when outcomes are missing, the true SE on the rows the replicate observed
(``observed_true_se``).  The Dataset carries the analytic truth of every condition as
coordinates.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from study.design.conditions import factor_names
from study.design.generate import data_for
from study.design.seeds import engine_seed
from study.design.truth import compute_truth
from study.run.fitting import fit_recorded, stop_if_failed, where
from study.run.kinds.base import PairOutput, factor_coords
from study.run.store import RESULTS, Layout
from study.schema import COVERAGE_SCHEMA, TERM_COORDS

if TYPE_CHECKING:
    from models.base import Engine
    from study.design.config import StudyConfig
    from study.design.generate import AnyDesign
    from study.design.truth import Truth


def observed_true_se(sample: Any, terms: Sequence[str], fixed: Sequence[str]) -> np.ndarray:
    """The true SE of each term on the rows ``sample`` observed (``observed_true_se``):
    ``sqrt(diag(sample.observed_cov))`` on the fixed effects, NaN for the variance
    parameters, and NaN throughout when no outcome is missing (``observed_cov`` None:
    the condition's ``true_se`` is every replicate's truth).

    The study's ``terms`` start with the generating structure's ``fixed`` effects, in
    the order of ``observed_cov``'s rows (:func:`models.structure.merged_terms`).
    """
    se = np.full(len(terms), np.nan)
    cov = sample.observed_cov
    if cov is None:
        return se
    fixed = list(fixed)
    cov = np.asarray(cov, dtype=float)
    if cov.shape != (len(fixed), len(fixed)) or list(terms[: len(fixed)]) != fixed:
        raise ValueError(
            f"observed_cov of shape {cov.shape} does not match the fixed effects {fixed}"
        )
    se[: len(fixed)] = np.sqrt(np.diag(cov))
    return se


class Coverage:
    """The coverage study (``study run``): see the module docstring."""

    name = "coverage"
    layout = Layout(RESULTS, COVERAGE_SCHEMA, "study run", "--replicates")
    what = "a coverage study"

    def claims(self, config: StudyConfig) -> bool:
        """Every configuration that no other kind claims (the registry's default)."""
        return True

    def recognises(self, path: Path) -> bool:
        return (path / RESULTS).is_file()

    def default_out(self, config: StudyConfig) -> Path:
        return Path("outputs") / config.name

    def terms(self, config: StudyConfig) -> tuple[list[str], list[str]]:
        return config.terms()

    def context(self, config: StudyConfig, design_of: Any) -> dict[str, Truth]:
        """The analytic truth of every condition, by condition id."""
        terms = config.terms()[0]
        return {c.id: compute_truth(design_of(c.id), terms) for c in config.conditions}

    def run_pair(
        self,
        config: StudyConfig,
        design: AnyDesign,
        engines: Sequence[Engine],
        replicate: int,
        fail_fast: bool,
    ) -> PairOutput:
        """Generate replicate ``replicate`` of ``design`` and fit it with every engine.

        For the first ``config.keep_draws`` replicates of each condition the
        posteriors are kept.  Every fit is put on the study's term list (the union of
        the engines' structures: NaN for terms a model does not have).
        """
        sample = design.sample(replicate)
        keep = replicate < config.keep_draws
        terms, effects = config.terms()
        fits, kept = [], []
        for name, engine in zip(config.engines, engines, strict=True):
            structure = config.structure_of(name)
            data = data_for(sample.data, structure)  # misspecified: same data, other Z
            seed = engine_seed(config.seed, design.id, replicate, name)
            fit = fit_recorded(engine, data, structure, seed=seed, keep_posterior=keep)
            if fail_fast:
                stop_if_failed(fit, name, where(config, design.id, "replicate", replicate))
            posterior = fit.take_posterior()
            if keep and posterior is not None:
                kept.append((name, posterior))
            fits.append(fit.aligned(terms, effects))
        values: dict[str, np.ndarray] = {
            var: np.array([getattr(f, var) for f in fits], dtype=spec.dtype)
            for var, spec in COVERAGE_SCHEMA.vars.items()
            if "engine" in spec.axes
        }
        values["observed_true_se"] = observed_true_se(sample, terms, design.config.structure.fixed)
        return PairOutput(values, kept)

    def axes(self, config: StudyConfig) -> dict[str, int]:
        return {}

    def coords(self, config: StudyConfig, context: Mapping[str, Truth]) -> dict[str, Any]:
        """The grid's factors on ``condition``; the truth on (condition, term)."""
        conditions = config.conditions
        coords: dict[str, Any] = factor_coords(conditions)
        per_condition = {
            "true_value": [context[c.id].value for c in conditions],
            "true_se": [context[c.id].se for c in conditions],
            "cond_value": [context[c.id].cond_value for c in conditions],
            "cond_se": [context[c.id].cond_se for c in conditions],
        }
        for name, rows in per_condition.items():
            coords[name] = (
                ("condition", "term"),
                np.stack(rows),
                {"description": TERM_COORDS[name]},
            )
        return coords

    def attrs(self, config: StudyConfig, manifest: Mapping[str, Any]) -> dict[str, Any]:
        return {"factors": json.dumps(factor_names(config.conditions))}


COVERAGE = Coverage()
