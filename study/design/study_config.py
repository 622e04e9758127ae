"""The validated configuration of a whole study (:class:`StudyConfig`): its design, the
engines and their options, the structures they fit, conditions, SBC settings, and the
hash of everything that determines a replicate's results.  Loading it from TOML is
:mod:`study.design.config`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from functools import cached_property
from typing import Any

import tomli_w

from models.crossed import CrossedStructure
from models.registry import DEFAULT_ENGINES, Registry, default_registry, options_table
from models.structure import Structure, merged_terms, term_effects
from models.validate import OptionError, boolean, fail, integer, number
from study.design.conditions import Condition, expand
from study.design.crossed import algebra as crossed_algebra
from study.design.crossed.spec import CrossedDesignConfig
from study.design.random_part import bar_structure, random_effects
from study.design.spec import DesignConfig

#: the largest replicate count a study may ask for (its results must fit in memory:
#: 1e6 replicates x 2 engines x 6 terms x 7 variables x 8 bytes = 0.7 GB)
MAX_REPLICATES = 1_000_000
#: the largest root seed: 64-bit signed, as numpy and the results' netCDF attributes
#: store it (``SeedSequence`` itself takes any size)
MAX_SEED = 2**63 - 1
#: the version of what the generator draws for a configuration: part of the hash, so a
#: run made by another version is never resumed or extended with other data (2: X keyed
#: by the settings that define it, predictors drawn column by column)
GENERATOR_VERSION = 2
#: field metadata marking settings that do not change any replicate's results
NOT_HASHED = {"hashed": False}


@dataclass(frozen=True)
class StudyConfig:
    """A whole study: name, design, replicate count, seed, engines and their options.

    ``engines`` names the engines run, in the order of the results' ``engine``
    coordinate; ``engine_options`` holds each one's validated options object (from
    :func:`models.registry.build_options`).  ``engine_structures`` holds, per engine,
    the random-effects structure it fits when that differs from the generating one
    (``random`` and/or ``correlated`` in ``[engines.NAME]``: a misspecification
    study).  Settings that never change a replicate's
    results (``name``, ``replicates``, ``keep_draws``) are left out of :meth:`hash`,
    so a finished run can be extended.  ``keep_draws``: the full posterior of the first
    ``keep_draws`` replicates is kept beside the results (engines with draws only).
    """

    name: str = field(metadata=NOT_HASHED)
    design: DesignConfig | CrossedDesignConfig
    replicates: int = field(default=200, metadata=NOT_HASHED)
    seed: int = 20181101
    level: float = 0.95
    engines: tuple[str, ...] = DEFAULT_ENGINES
    engine_options: Mapping[str, Any] = field(default_factory=dict)
    engine_structures: Mapping[str, Any] = field(default_factory=dict)
    keep_draws: int = field(default=3, metadata=NOT_HASHED)
    condition_spec: Mapping[str, Any] = field(default_factory=dict)
    #: the settings table of a kind of study other than the coverage study, by its
    #: table name (``[sbc]``: :class:`study.design.sbc.SbcSettings`): each has
    #: ``table(hashed)`` and ``checked(config)`` (:class:`KindSettings`)
    kind_settings: Mapping[str, Any] = field(default_factory=dict)
    #: replicates per condition (condition id -> count) where they differ from
    #: ``replicates`` (empty: ``replicates`` for every condition); a label may stand
    #: for an id (normalised to ids).  Set by a run to a precision target
    #: (``study run --mcse``) or ``[replicates_by_condition]``; never changes a
    #: replicate's results, so it is not hashed
    replicates_by_condition: Mapping[str, int] = field(default_factory=dict, metadata=NOT_HASHED)
    #: the engines that may be named (default: those installed, read from the entry
    #: points); engines given through the Python API join it (``Registry.with_engines``)
    registry: Registry = field(  # type: ignore[assignment]  # None: the default registry
        default=None, compare=False, repr=False, metadata=NOT_HASHED
    )
    #: the designs of the study (from ``design`` and ``condition_spec``), in order
    conditions: tuple[Condition, ...] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.registry is None:
            object.__setattr__(self, "registry", default_registry())
        registry = self.registry
        name = self.name
        if not isinstance(name, str) or not name or any(c in name for c in "/\\"):
            raise fail("name", name, "must be a non-empty name without slashes")
        integer("replicates", self.replicates, low=1, high=MAX_REPLICATES)
        integer("seed", self.seed, low=0, high=MAX_SEED)
        integer("keep_draws", self.keep_draws, low=0)
        object.__setattr__(self, "level", number("level", self.level, low=0.0, high=1.0))
        engines = self.engines
        if isinstance(engines, str) or not isinstance(engines, list | tuple) or not engines:
            shown = list(engines) if isinstance(engines, tuple) else engines
            raise fail(
                "engines.run",
                shown,
                f"must be a non-empty list of engines from {', '.join(registry.names)}",
            )
        for i, e in enumerate(engines):
            registry.kind(e, f"engines.run[{i}]")
        if len(set(engines)) != len(engines):
            raise fail("engines.run", list(engines), "names must be distinct")
        object.__setattr__(self, "engines", tuple(engines))
        object.__setattr__(self, "engine_structures", self._checked_structures())
        # every engine run gets a validated options object (defaults where none given),
        # checked against the structure it fits (e.g. one prior scale per random effect)
        options = dict(self.engine_options)
        for i, name in enumerate(self.engines):
            given = options.get(name)
            fitted = self.structure_of(name)
            one_factor = fitted if isinstance(fitted, Structure) else None
            if one_factor is None:  # several grouping factors: engines that fit them only
                problem = registry.fits(name, fitted)
                if problem:
                    raise fail(f"engines.run[{i}]", name, f"{problem} (a crossed design)")
            try:
                if given is None or isinstance(given, Mapping):
                    given = registry.build_options(
                        name, given, level=self.level, structure=one_factor
                    )
                elif one_factor is not None:
                    registry.check_structure(name, given, one_factor)
            except OptionError as err:
                raise err.within(f"engines.{name}") from err
            options[name] = given
        object.__setattr__(self, "engine_options", options)
        if not isinstance(self.condition_spec, Mapping):
            raise fail("conditions", self.condition_spec, "must be a table")
        conditions = expand(self.design, self.condition_spec)
        object.__setattr__(self, "conditions", conditions)
        self._check_crossed_fits()
        object.__setattr__(self, "replicates_by_condition", self._checked_counts())
        if not isinstance(self.kind_settings, Mapping):
            raise fail("kind_settings", self.kind_settings, "must be a mapping")
        if isinstance(self.design, CrossedDesignConfig):
            for key in self.kind_settings:
                raise fail(
                    key,
                    "(a table)",
                    "is not available for a crossed design yet (its generator has no prior "
                    "draws or null twins); run the coverage study: study run",
                )
        checked = {key: value.checked(self) for key, value in self.kind_settings.items()}
        object.__setattr__(self, "kind_settings", checked)

    def _checked_counts(self) -> dict[str, int]:
        """``replicates_by_condition`` validated: keys are condition ids (or labels,
        turned into ids), counts whole numbers in 1..MAX_REPLICATES; in condition order."""
        raw = self.replicates_by_condition
        if not isinstance(raw, Mapping):
            raise fail("replicates_by_condition", raw, "must be a table of condition id = count")
        ids = {c.id: c.id for c in self.conditions} | {c.label: c.id for c in self.conditions}
        given: dict[str, int] = {}
        for key, count in raw.items():
            where = f"replicates_by_condition.{key}"
            if key not in ids:
                shown = ", ".join(c.id for c in self.conditions[:4])
                raise fail(where, count, f"names no condition of this study (ids: {shown}...)")
            given[ids[key]] = integer(where, count, low=1, high=MAX_REPLICATES)
        return {c.id: given[c.id] for c in self.conditions if c.id in given}

    def count(self, condition_id: str) -> int:
        """The replicates of condition ``condition_id``: its entry of
        ``replicates_by_condition``, else ``replicates``."""
        return int(self.replicates_by_condition.get(condition_id, self.replicates))

    @property
    def counts(self) -> dict[str, int]:
        """The replicates of every condition, by id, in condition order."""
        return {c.id: self.count(c.id) for c in self.conditions}

    @property
    def pairs(self) -> int:
        """The (condition, replicate) pairs of the study: the sum of :attr:`counts`."""
        return sum(self.counts.values())

    def _checked_structures(self) -> dict[str, dict[str, Any]]:
        """``engine_structures`` validated: ``random`` names fixed effects (kept in their
        order), ``correlated`` a boolean; only engines of ``engines.run``.  A crossed
        design's engines take ``random`` as lme4 bars over its factors only."""
        raw = self.engine_structures
        if not isinstance(raw, Mapping):
            raise fail("engines", raw, "must be a table")
        if isinstance(self.design, CrossedDesignConfig):
            return self._crossed_structures(raw, self.design)
        fixed = self.design.structure.fixed
        out: dict[str, dict[str, Any]] = {}
        for name, table in raw.items():
            if name not in self.engines:
                continue  # an engine not run (with_engines / as_sbc dropped it)
            entry: dict[str, Any] = {}
            key = f"engines.{name}.random"
            if isinstance(table.get("random"), str):  # an lme4 random part: "(1 | g)"
                parsed = bar_structure(table["random"], fixed, True, key)
                entry["random"] = list(parsed.random)
                if not parsed.correlated:
                    entry["correlated"] = False
            elif "random" in table:
                names = random_effects(table["random"], fixed, key, ordered=False)
                entry["random"] = list(names or fixed)
            if "correlated" in table:
                entry["correlated"] = boolean(f"engines.{name}.correlated", table["correlated"])
            if len(entry.get("random", self.design.structure.random)) == 1:
                entry.pop("correlated", None)  # one random effect: nothing to correlate
            if entry:
                out[name] = entry
        return out

    def _crossed_structures(
        self, raw: Mapping[str, Any], design: CrossedDesignConfig
    ) -> dict[str, dict[str, Any]]:
        """``[engines.NAME] random`` of a crossed design: lme4 bars over its factors,
        written back as lme4 writes them."""
        out: dict[str, dict[str, Any]] = {}
        for name, table in raw.items():
            if name not in self.engines:
                continue
            if "correlated" in table:
                raise fail(
                    f"engines.{name}.correlated",
                    table["correlated"],
                    "is for one-factor designs; in a crossed design write || in random, e.g. "
                    "(1 + cond || subj)",
                )
            if "random" in table:
                text = table["random"]
                design.parse(text, f"engines.{name}.random")
                out[name] = {"random": " ".join(text.split())}
        return out

    def _check_crossed_fits(self) -> None:
        """Each engine's crossed structure can be fitted to every condition's design
        (lme4's checks and identified random slopes)."""
        for name, entry in self.engine_structures.items():
            structure = self.structure_of(name)
            if not isinstance(structure, CrossedStructure):
                continue
            for c in self.conditions:
                assert isinstance(c.design, CrossedDesignConfig)
                problem = c.design.problem(structure)
                if problem:
                    where = f" (condition {c.label})" if self.multi else ""
                    raise fail(f"engines.{name}.random", entry["random"], problem + where)

    @cached_property
    def _fitted(self) -> dict[str, Structure | CrossedStructure]:
        """Each engine's structure, built once (fits ask for it per replicate)."""
        if isinstance(self.design, CrossedDesignConfig):
            crossed = self.design
            return {
                engine: crossed.parse(self.engine_structures[engine]["random"])
                if engine in self.engine_structures
                else crossed.structure
                for engine in self.engines
            }
        design = self.design.structure
        out: dict[str, Structure | CrossedStructure] = {}
        for engine in self.engines:
            entry = self.engine_structures.get(engine, {})
            out[engine] = Structure(
                design.fixed,
                tuple(entry.get("random", design.random)),
                entry.get("correlated", design.correlated),
            )
        return out

    @cached_property
    def _terms(self) -> tuple[list[str], list[str]]:
        fixed = self.design.structure.fixed
        structures = [self.design.structure, *self._fitted.values()]
        if isinstance(self.design, CrossedDesignConfig):
            crossed = [s for s in structures if isinstance(s, CrossedStructure)]
            terms = crossed_algebra.merged_terms(fixed, self.design.factors, crossed)
        else:
            terms = merged_terms(fixed, [s for s in structures if isinstance(s, Structure)])
        return terms, term_effects(terms, fixed)

    def structure_of(self, engine: str) -> Structure | CrossedStructure:
        """The random-effects structure ``engine`` (one of ``engines``) fits: the
        generating one unless ``[engines.NAME]`` sets ``random`` or ``correlated``."""
        return self._fitted[engine]

    def terms(self) -> tuple[list[str], list[str]]:
        """The results' terms and their effect kinds: every term of the generating
        structure and of the structures the engines fit, in one canonical order."""
        terms, effects = self._terms
        return list(terms), list(effects)

    def engine_version(self, engine: str) -> int:
        """The version of what engine label ``engine`` computes (its registration's)."""
        return self.registry.versions[self.registry.kind(engine)]

    def has_prior(self, engine: str) -> bool:
        """Whether engine label ``engine`` has a prior it can draw from."""
        return self.registry.kind(engine) in self.registry.prior_engines

    @property
    def multi(self) -> bool:
        """Whether the study has more than one condition."""
        return len(self.conditions) > 1

    def to_dict(self) -> dict[str, Any]:
        """The configuration as plain TOML-ready tables (every setting explicit)."""
        design = self.design.table()
        engines: dict[str, Any] = {"run": list(self.engines)}
        for name in self.engines:
            engines[name] = {
                **self.engine_structures.get(name, {}),
                **options_table(self.engine_options[name]),
            }
        table = {
            "name": self.name,
            "replicates": self.replicates,
            "seed": self.seed,
            "level": self.level,
            "keep_draws": self.keep_draws,
            "design": design,
            "engines": engines,
        }
        if self.condition_spec:
            table["conditions"] = dict(self.condition_spec)
        if self.replicates_by_condition:
            table["replicates_by_condition"] = dict(self.replicates_by_condition)
        for key, settings in self.kind_settings.items():
            table[key] = settings.table()
        return table

    def to_toml(self) -> str:
        """The configuration as TOML, read back identically by :func:`load_config`."""
        return tomli_w.dumps(self.to_dict())

    def hashed_settings(self) -> dict[str, Any]:
        """Every setting that determines a replicate's results (what :meth:`hash` hashes).

        Derived from the fields themselves: all but those marked ``NOT_HASHED``.
        """
        table = self.to_dict()
        for f in fields(self):
            if f.metadata.get("hashed", True) is False:
                table.pop(f.name, None)
        for key, settings in self.kind_settings.items():
            table[key] = settings.table(hashed=True)
        table["design"] = self.design.table(hashed=True)  # a pilot file: by its sha256
        conditions = table.get("conditions", {})
        if isinstance(conditions.get("add"), list):  # a condition's label is only its name
            add = [{k: v for k, v in e.items() if k != "label"} for e in conditions["add"]]
            table["conditions"] = {**conditions, "add": add}
        table["generator"] = GENERATOR_VERSION
        return table

    def hash(self) -> str:
        """Hash of :meth:`hashed_settings` (engines, their order and options included)."""
        text = json.dumps(self.hashed_settings(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def with_replicates(self, n: int) -> StudyConfig:
        """A copy with another replicate count."""
        return dataclasses.replace(self, replicates=n)

    def with_counts(self, counts: Mapping[str, int]) -> StudyConfig:
        """A copy whose conditions have the replicate counts ``counts`` (condition id or
        label -> count; conditions not named keep ``replicates``)."""
        return dataclasses.replace(self, replicates_by_condition=dict(counts))

    def with_engines(self, engines: tuple[str, ...]) -> StudyConfig:
        """A copy that runs ``engines`` (options kept for those configured)."""
        return dataclasses.replace(self, engines=engines)


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value
