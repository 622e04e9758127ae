"""Engine registry: engine names -> registration records, options and engines.

This is the one place that maps the names used in configurations (``"reml"``,
``"bayes"``, ``"gee"``, ``"ols"``, or a third-party engine's) to code, so callers never
import engine modules directly, and a configuration file can only name engines that
are registered, never an import path.

* An engine is registered by an :class:`EngineSpec`: its name, its options class and
  engine class (``"module:attribute"`` references, imported only when first used:
  PyMC is slow to import), the version of what it computes and its declared
  :class:`~models.base.Capability` values.
* Installed packages register engines through the entry-point group
  :data:`ENTRY_POINT_GROUP` (``lmm_study.engines``), each entry point naming an
  ``EngineSpec`` object in a light module; the built-in engines are registered the same
  way (``pyproject.toml``).  :meth:`Registry.default` reads them once per process.
* Engines given through the Python API join with :meth:`Registry.with_engines`, which
  returns a new registry (the default one is never changed).

Options are validated once, into the engine's frozen options object
(:meth:`Registry.build_options`); an engine is then built from that object
(:meth:`Registry.build_engine`).  Optional abilities are used only when declared:
:meth:`Registry.compile_engine`, :meth:`Registry.check_structure`,
:meth:`Registry.limit_threads`, :meth:`Registry.has`, :meth:`Registry.tests_of`.  The
module-level functions (:func:`engine_kind`, :func:`build_options`, :func:`build_engine`,
...) do the same with the default registry.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from models.base import Capability, Compiling, Engine, StructureChecked, ThreadLimited
from models.spec import EngineSpec
from models.structure import Structure
from models.validate import OptionError, OptionTypeError, check_keys

if TYPE_CHECKING:
    from models.crossed.data import CrossedData
    from models.data import LMMData

__all__ = [
    "BUILTIN_ENGINES",
    "DEFAULT_ENGINES",
    "ENGINE_NAMES",
    "ENTRY_POINT_GROUP",
    "Capability",
    "EngineSpec",
    "Registry",
    "build_engine",
    "build_options",
    "check_structure",
    "compile_engine",
    "default_registry",
    "draws_prior",
    "engine_kind",
    "is_engine_label",
    "limit_threads",
    "options_table",
]

#: the entry-point group through which packages register engines
ENTRY_POINT_GROUP = "lmm_study.engines"
#: the engines that ship with this package, in their canonical order
BUILTIN_ENGINES: tuple[str, ...] = ("reml", "bayes", "gee", "ols")
#: the engines a study runs when its configuration names none
DEFAULT_ENGINES: tuple[str, ...] = ("reml", "bayes")
#: kept for existing callers: the default engines (``DEFAULT_ENGINES``); the names
#: that may be used are ``default_registry().names``
ENGINE_NAMES: tuple[str, ...] = DEFAULT_ENGINES

#: the suffix of an engine variant's label (``reml-kr``)
_SUFFIX = re.compile(r"[a-z0-9_]+")


@dataclass(frozen=True)
class Registry:
    """The registered engines (immutable: :meth:`with_engines` returns a new one).

    Parameters
    ----------
    specs : tuple of EngineSpec
        One per engine name.
    broken : tuple of (str, str)
        Entry points that were found but could not be used: (name, reason), quoted
        when such a name is asked for.
    """

    specs: tuple[EngineSpec, ...] = ()
    broken: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        specs = tuple(self.specs)
        for spec in specs:
            if not isinstance(spec, EngineSpec):
                raise TypeError(f"specs: {spec!r} is not an EngineSpec")
        names = [s.name for s in specs]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(
                f"engine names {twice} are registered twice; give each engine its own name"
            )
        object.__setattr__(self, "specs", specs)

    @staticmethod
    def default() -> Registry:
        """The engines registered by installed packages (entry-point group
        :data:`ENTRY_POINT_GROUP`), read once per process."""
        return default_registry()

    @functools.cached_property
    def _by_name(self) -> dict[str, EngineSpec]:
        return {s.name: s for s in self.specs}

    @property
    def names(self) -> tuple[str, ...]:
        """Engine names: the built-ins in their canonical order, then the others sorted."""
        order = {n: i for i, n in enumerate(BUILTIN_ENGINES)}
        return tuple(sorted(self._by_name, key=lambda n: (order.get(n, len(order)), n)))

    def with_engines(self, *specs: EngineSpec) -> Registry:
        """This registry with ``specs`` added (a new registry; names must be new).

        Raises
        ------
        ValueError
            When a name is already registered.
        """
        taken = [s.name for s in specs if s.name in self._by_name]
        if taken:
            raise ValueError(
                f"engines {taken} are already registered ({', '.join(self.names)}); give "
                "the new engine another name"
            )
        return Registry((*self.specs, *specs), self.broken)

    def kind(self, label: object, key: str = "engine") -> str:
        """The engine that ``label`` runs (see :func:`engine_kind`).

        Raises
        ------
        OptionError
            Naming ``key``, listing the registered engines.
        """
        names = ", ".join(self.names)
        if not isinstance(label, str):
            raise OptionTypeError(key, label, f"must be one of {names}")
        kind, sep, suffix = label.partition("-")
        if kind not in self._by_name or (sep and not _SUFFIX.fullmatch(suffix)):
            why = dict(self.broken).get(kind)
            hint = f" ({kind!r} is installed but cannot be loaded: {why})" if why else ""
            raise OptionError(
                key,
                label,
                f"must be one of {names}, or one of them with a suffix for a variant with "
                "its own options (e.g. reml-kr: lower-case letters, digits, _)" + hint,
            )
        return kind

    def is_label(self, name: object) -> bool:
        """Whether ``name`` is an engine label (:meth:`kind`)."""
        try:
            self.kind(name)
        except OptionError:
            return False
        return True

    def spec(self, label: str) -> EngineSpec:
        """The registration of the engine that ``label`` runs."""
        return self._by_name[self.kind(label)]

    def has(self, label: str, capability: Capability | str) -> bool:
        """Whether the engine of ``label`` declares ``capability``."""
        return self.spec(label).has(capability)

    @property
    def versions(self) -> dict[str, int]:
        """Engine name -> the version of what it computes."""
        return {n: self._by_name[n].version for n in self.names}

    @property
    def prior_engines(self) -> tuple[str, ...]:
        """The engines with a prior they can draw from (:attr:`Capability.PRIOR`)."""
        return tuple(n for n in self.names if self._by_name[n].has(Capability.PRIOR))

    def tests_of(self, label: str) -> tuple[str, ...]:
        """The names of the hypothesis tests the engine of ``label`` offers
        (:attr:`EngineSpec.tests`; ``()`` for an engine without
        :attr:`Capability.TESTS`).  ``"reml-kr"`` gives the tests of ``"reml"``."""
        return self.spec(label).tests

    def options_class(self, label: str) -> type:
        """The options class of the engine of ``label``."""
        return self.spec(label).options_class()

    def build_options(
        self,
        label: str,
        table: Mapping[str, Any] | None = None,
        *,
        level: float = 0.95,
        structure: Structure | None = None,
    ) -> Any:
        """The validated, frozen options object of engine ``label`` from a plain table
        (see :func:`build_options`)."""
        spec = self.spec(label)
        cls = spec.options_class()
        table = dict(table or {})
        if "level" in table:
            raise OptionError(
                "",
                table["level"],
                "'level' is set for the whole study (top-level key `level`), not per "
                "engine; remove it from the engine's table",
            )
        options = _build(cls, table, level=level)
        if structure is not None:
            self.check_structure(label, options, structure)
        return options

    def build_engine(self, label: str, options: Any = None, *, level: float = 0.95) -> Engine:
        """Construct the engine of ``label`` from its options object (or a plain table,
        validated); its declared capabilities are checked against what it implements."""
        spec = self.spec(label)
        if options is None or isinstance(options, Mapping):
            options = self.build_options(label, options, level=level)
        cls = spec.options_class()
        if not isinstance(options, cls):
            raise TypeError(
                f"options for engine {label!r} must be a {cls.__name__} (or a table of its "
                f"settings); got {type(options).__name__}"
            )
        engine = spec.engine_factory()(options)
        spec.check_promises(engine, options)
        return engine

    def compile_engine(self, label: str, engine: Engine, data: LMMData) -> float:
        """Compile ``engine`` for data shaped like ``data`` when it declares
        :attr:`Capability.COMPILE`; the seconds spent (0.0 for other engines)."""
        if not self.has(label, Capability.COMPILE):
            return 0.0
        return float(typing.cast(Compiling, engine).compile(data))

    def check_structure(self, label: str, options: Any, structure: Structure) -> None:
        """Check ``options`` against ``structure`` when the engine declares
        :attr:`Capability.STRUCTURE_CHECK` (nothing to check otherwise).

        Raises
        ------
        OptionError
            Keyed relative to the options.
        """
        if not isinstance(structure, Structure):
            raise TypeError(f"structure must be a Structure; got {type(structure).__name__}")
        if self.has(label, Capability.STRUCTURE_CHECK):
            typing.cast(StructureChecked, options).check_structure(structure)

    def fits(self, label: str, structure: Any) -> str:
        """Why the engine of ``label`` cannot fit models of ``structure``, or ``""``: a
        structure with several grouping factors (:class:`models.crossed.
        CrossedStructure`) needs :attr:`Capability.CROSSED`."""
        groups = getattr(structure, "groups", None)
        if groups is None or self.has(label, Capability.CROSSED):
            return ""
        able = [n for n in self.names if self.has(n, Capability.CROSSED)]
        return (
            f"engine {label} fits one grouping factor only, but the model has "
            f"{len(groups)} ({', '.join(groups)}); use "
            + (" or ".join(able) if able else "an engine that declares 'crossed'")
        )

    def limit_threads(self, label: str, options: Any, threads: int) -> Any:
        """``options`` capped at ``threads`` cores when the engine declares
        :attr:`Capability.THREADS`; others are returned as they are."""
        if not self.has(label, Capability.THREADS):
            return options
        return typing.cast(ThreadLimited, options).with_threads(threads)

    def options_for_data(
        self, label: str, data: LMMData | CrossedData
    ) -> tuple[dict[str, Any], list[str]]:
        """The option table the engine of ``label`` proposes for fitting a user's
        ``data`` and lines describing it (:attr:`EngineSpec.data_options`)."""
        return self.spec(label).options_for_data(data)

    def label_of_options(self, options: Any) -> str:
        """The engine whose options class ``options`` is an instance of."""
        for name in self.names:
            try:
                cls = self._by_name[name].options_class()
            except Exception:  # a broken third-party engine is not this one
                continue
            if type(options) is cls:
                return name
        raise TypeError(
            f"options of type {type(options).__name__} belong to no registered engine "
            f"({', '.join(self.names)})"
        )


def _entry_points() -> list[Any]:
    from importlib.metadata import entry_points

    return list(entry_points(group=ENTRY_POINT_GROUP))


@functools.cache
def default_registry() -> Registry:
    """The default registry: the engines of the installed entry points, read once per
    process (call ``default_registry.cache_clear()`` after installing a package into a
    running process).

    An entry point that cannot be loaded, is not an :class:`EngineSpec`, has another
    name than its spec, or clashes with another package's entry point of the same name
    is left out and recorded in ``broken`` (a broken plug-in must not stop the others).
    A source tree used without installing (no entry points for the built-in engines)
    still gets the built-ins, from :mod:`models.builtin`.
    """
    found: dict[str, tuple[str, EngineSpec]] = {}
    broken: dict[str, str] = {}
    for ep in _entry_points():
        if ep.name in found and found[ep.name][0] == ep.value:
            continue  # the same distribution seen twice on the path
        if ep.name in found or ep.name in broken:
            first = found.pop(ep.name, ("?", None))[0]
            broken[ep.name] = f"registered twice ({first} and {ep.value}); uninstall one"
            continue
        try:
            spec = ep.load()
        except Exception as err:
            broken[ep.name] = f"importing {ep.value} failed: {type(err).__name__}: {err}"
            continue
        if not isinstance(spec, EngineSpec):
            broken[ep.name] = f"{ep.value} is a {type(spec).__name__}, not an EngineSpec"
        elif spec.name != ep.name:
            broken[ep.name] = f"{ep.value} is the spec of {spec.name!r}, not {ep.name!r}"
        else:
            found[ep.name] = (ep.value, spec)
    specs = {name: spec for name, (_, spec) in found.items()}
    if not all(name in specs for name in BUILTIN_ENGINES):
        from models import builtin

        for spec in builtin.SPECS:
            if spec.name not in broken:
                specs.setdefault(spec.name, spec)
    return Registry(tuple(specs.values()), tuple(sorted(broken.items())))


def engine_kind(label: object, key: str = "engine") -> str:
    """The engine that ``label`` runs.

    A label is an engine name (``"reml"``) or, for a second instance of that engine
    with options of its own, the name with a suffix: ``"reml-kr"`` runs the REML
    engine with the options of ``[engines.reml-kr]`` (suffix: lower-case letters,
    digits, ``_``).  Variants let one study compare settings of one method side by
    side (e.g. interval options), each a value of the results' ``engine`` coordinate.
    """
    return default_registry().kind(label, key)


def is_engine_label(name: object) -> bool:
    """Whether ``name`` is an engine label (:func:`engine_kind`)."""
    return default_registry().is_label(name)


def _build(cls: type, table: object, **fixed: Any) -> Any:
    """Instantiate dataclass ``cls`` from ``table`` (plus ``fixed`` settings that the
    table may not hold), recursing into nested dataclasses.

    Errors are keyed relative to ``table`` (``chains``, ``priors.sd_scale``).
    """
    if not isinstance(table, Mapping):
        raise OptionTypeError("", table, f"must be a table of {cls.__name__} settings")
    flds = {f.name for f in dataclasses.fields(cls)}
    check_keys(table, flds - set(fixed), "")
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for key, value in table.items():
        hint = hints.get(key)
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            if not isinstance(value, Mapping):
                raise OptionTypeError(key, value, "must be a table")
            try:
                value = _build(hint, value)
            except OptionError as err:
                raise err.within(key) from err
        elif isinstance(value, list):
            value = tuple(value)
        kwargs[key] = value
    return cls(**kwargs, **fixed)


def build_options(
    name: str,
    table: Mapping[str, Any] | None = None,
    *,
    level: float = 0.95,
    structure: Structure | None = None,
) -> Any:
    """The validated, frozen options object of engine ``name`` from a plain table.

    Parameters
    ----------
    name : str
        An engine label (a registered name, or one with a variant suffix).
    table : mapping, optional
        Option values by name (TOML ``[engines.NAME]``); missing ones take defaults.
    level : float
        The interval level: a study-wide setting, refused inside ``table``.
    structure : Structure, optional
        The model the options will serve; when given, and the engine declares
        :attr:`Capability.STRUCTURE_CHECK`, settings per coefficient or per random
        effect (the Bayesian engine's prior lists) must match it.

    Raises
    ------
    OptionError
        Keyed relative to ``table`` (e.g. ``"chains = 0: must be >= 1"``).
    """
    return default_registry().build_options(name, table, level=level, structure=structure)


def options_table(options: Any) -> dict[str, Any]:
    """The options object as a plain table (lists for tuples; ``level`` left out).

    A field marked ``OMIT_DEFAULT`` is left out while it holds its default: an option
    added later then leaves the tables, and so the configuration hashes, of existing
    runs as they were.
    """

    def plain(value: Any) -> Any:
        if isinstance(value, tuple):
            return [plain(v) for v in value]
        return value

    out: dict[str, Any] = {}
    for f in dataclasses.fields(options):
        value = getattr(options, f.name)
        if f.name == "level" or (f.metadata.get("omit_default") and value == f.default):
            continue
        out[f.name] = options_table(value) if dataclasses.is_dataclass(value) else plain(value)
    return out


def build_engine(name: str, options: Any = None, *, level: float = 0.95) -> Engine:
    """Construct engine ``name`` from its options object (or a plain table, validated)."""
    return default_registry().build_engine(name, options, level=level)


def compile_engine(engine: Engine, data: LMMData) -> float:
    """Compile ``engine`` (a registered engine, found by its ``name``) for data shaped
    like ``data`` if it declares :attr:`Capability.COMPILE`; the seconds spent (0.0 for
    engines that do not compile)."""
    return default_registry().compile_engine(engine.name, engine, data)


def check_structure(options: Any, structure: Structure) -> None:
    """Check an engine's ``options`` against ``structure`` if the engine declares
    :attr:`Capability.STRUCTURE_CHECK` (the engine is found by the options' class)."""
    registry = default_registry()
    registry.check_structure(registry.label_of_options(options), options, structure)


def limit_threads(options: Any, threads: int) -> Any:
    """``options`` for an engine that may use at most ``threads`` cores.

    For engines that declare :attr:`Capability.THREADS` (the Bayesian engine's
    chains) the options' ``with_threads`` caps it; others are returned as they are.
    The results of a fit never depend on this setting.
    """
    registry = default_registry()
    return registry.limit_threads(registry.label_of_options(options), options, threads)


def draws_prior(engine: Engine | str) -> bool:
    """Whether ``engine`` (an engine, or an engine label) declares
    :attr:`Capability.PRIOR`: it can draw from its prior, and its fits carry ``draws``."""
    label = engine if isinstance(engine, str) else engine.name
    return default_registry().has(label, Capability.PRIOR)


def __getattr__(name: str) -> Any:
    """Constants read from the default registry when first asked for (kept for
    existing callers): ``ENGINE_VERSIONS`` (name -> version) and ``PRIOR_ENGINES``."""
    if name == "ENGINE_VERSIONS":
        return default_registry().versions
    if name == "PRIOR_ENGINES":
        return default_registry().prior_engines
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
