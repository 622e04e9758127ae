"""The registration record of an engine (:class:`EngineSpec`): light, imports no engine.

A package registers an engine by pointing an entry point of the group
``lmm_study.engines`` at an ``EngineSpec`` object (see :mod:`models.registry` and
``docs/engines.md``).
"""

from __future__ import annotations

import dataclasses
import importlib
import re
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from models.base import (
    Capability,
    Compiling,
    Engine,
    PriorEngine,
    StructureChecked,
    Testing,
    ThreadLimited,
)

__all__ = ["EngineSpec"]

#: an engine name: lower-case letters, digits and ``_``, starting with a letter
_NAME = re.compile(r"[a-z][a-z0-9_]*")
#: a lazy reference ``package.module:attribute``
_REF = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*")
#: what each capability promises: (protocol, object that must implement it, method)
_PROMISES: dict[Capability, tuple[type, str, str]] = {
    Capability.COMPILE: (Compiling, "engine", "compile(data) -> float"),
    Capability.PRIOR: (PriorEngine, "engine", "draw_prior(structure, rng, scale)"),
    Capability.STRUCTURE_CHECK: (StructureChecked, "options", "check_structure(structure)"),
    Capability.THREADS: (ThreadLimited, "options", "with_threads(threads)"),
    Capability.TESTS: (Testing, "engine", "fit_tests(data, *, terms, null, tests, seed)"),
}


def _resolve(ref: str | Any) -> Any:
    """The object a ``"module:attribute"`` reference names (anything else as is)."""
    if not isinstance(ref, str):
        return ref
    module, _, attr = ref.partition(":")
    obj: Any = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


@dataclass(frozen=True)
class EngineSpec:
    """The registration record of one engine.

    Parameters
    ----------
    name : str
        The engine's name in configurations and results (lower-case letters, digits,
        ``_``; no ``-``, which starts a variant's suffix as in ``reml-kr``).
    engine : str or callable
        The engine class (or a factory), called with the options object:
        ``"package.module:Class"`` (imported when the first engine is built) or the
        class itself.
    options : str or type
        The options class: a frozen dataclass with a float field ``level`` (the study's
        interval level), built from a configuration table; ``"module:Class"`` or the
        class.
    version : int
        The version of what the engine computes (>= 1): raise it when the same options
        and seed give other numbers, so that a run started by one version is not
        resumed by another.
    capabilities : iterable of Capability or str
        The optional abilities the engine has (:class:`~models.base.Capability`):
        ``"compile"``, ``"structure_check"``, ``"threads"``, ``"prior"``, ``"tests"``.
    summary : str
        One line saying what the engine fits.
    data_options : str or callable, optional
        For fitting a user's own dataset (``study fit``): a function of the
        :class:`~models.data.LMMData` that returns ``(table, notes)``, the option table
        the engine proposes for those data (e.g. priors scaled to them, rstanarm-style)
        and lines that describe it; ``"module:function"`` or the function.  Default:
        no options, no notes.
    tests : tuple of str
        The names of the hypothesis tests the engine offers (its
        :class:`~models.base.Testing` ``fit_tests`` accepts them), in order, e.g.
        ``("z", "lrt")``: declared with, and only with, the ``"tests"`` capability.
    """

    name: str
    engine: str | Callable[[Any], Engine]
    options: str | type
    version: int = 1
    capabilities: frozenset[Capability] = field(default_factory=frozenset)
    summary: str = ""
    data_options: str | Callable[[Any], tuple[dict[str, Any], list[str]]] | None = None
    tests: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.fullmatch(self.name):
            raise ValueError(
                f"EngineSpec name {self.name!r}: must be lower-case letters, digits and _, "
                "starting with a letter (e.g. 'gee' or 'my_ols'); '-' starts a variant suffix"
            )
        for key in ("engine", "options", "data_options"):
            ref = getattr(self, key)
            if key == "data_options" and ref is None:
                continue
            if isinstance(ref, str) and not _REF.fullmatch(ref):
                raise ValueError(
                    f"EngineSpec {self.name!r} {key} = {ref!r}: must be a 'package.module:"
                    "Attribute' reference or the object itself"
                )
            if not isinstance(ref, str) and not callable(ref):
                raise TypeError(
                    f"EngineSpec {self.name!r} {key} = {ref!r}: must be a class or a "
                    "'module:Attribute' reference"
                )
        if isinstance(self.version, bool) or not isinstance(self.version, int) or self.version < 1:
            raise ValueError(
                f"EngineSpec {self.name!r} version = {self.version!r}: must be an int >= 1"
            )
        caps = self.capabilities
        if isinstance(caps, str) or not isinstance(caps, Iterable):
            raise TypeError(
                f"EngineSpec {self.name!r} capabilities = {caps!r}: must be a collection of "
                f"{', '.join(c.value for c in Capability)}"
            )
        valid = {c.value for c in Capability}
        bad = [c for c in caps if c not in valid]
        if bad:
            raise ValueError(
                f"EngineSpec {self.name!r} capabilities {bad!r}: not capabilities; choose "
                f"from {', '.join(sorted(valid))}"
            )
        object.__setattr__(self, "capabilities", frozenset(Capability(c) for c in caps))
        self._check_tests()

    def _check_tests(self) -> None:
        """``tests``: distinct non-empty names, declared with the ``tests`` capability."""
        tests = self.tests
        if isinstance(tests, str) or not isinstance(tests, tuple | list):
            raise TypeError(
                f"EngineSpec {self.name!r} tests = {tests!r}: must be a tuple of test names, "
                'e.g. ("z", "lrt")'
            )
        bad = [t for t in tests if not isinstance(t, str) or not t]
        if bad:
            raise ValueError(
                f"EngineSpec {self.name!r} tests {bad!r}: each test name must be a non-empty string"
            )
        twice = sorted({t for t in tests if tests.count(t) > 1})
        if twice:
            raise ValueError(
                f"EngineSpec {self.name!r} tests {twice!r} appear more than once; name each "
                "test once"
            )
        object.__setattr__(self, "tests", tuple(tests))
        declared = Capability.TESTS in self.capabilities
        if tests and not declared:
            raise ValueError(
                f"EngineSpec {self.name!r} names tests {list(tests)!r} but does not declare "
                "the 'tests' capability; add Capability.TESTS to capabilities (and implement "
                "fit_tests) or drop tests"
            )
        if declared and not tests:
            raise ValueError(
                f"EngineSpec {self.name!r} declares the 'tests' capability but names no "
                'tests; list them, e.g. tests=("z", "lrt"), or drop the capability'
            )

    def has(self, capability: Capability | str) -> bool:
        """Whether the engine declares ``capability``."""
        return Capability(capability) in self.capabilities

    def options_class(self) -> type:
        """The options class (imported on first use)."""
        cls = _resolve(self.options)
        if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
            raise TypeError(
                f"engine {self.name!r}: options {self.options!r} must be a dataclass, got {cls!r}"
            )
        if "level" not in {f.name for f in dataclasses.fields(cls)}:
            raise TypeError(
                f"engine {self.name!r}: options class {cls.__name__} has no field 'level'; "
                "add `level: float = 0.95` (the study sets the interval level)"
            )
        return cls

    def options_for_data(self, data: Any) -> tuple[dict[str, Any], list[str]]:
        """The options the engine proposes for fitting ``data`` and lines describing
        them (``({}, [])`` for engines without ``data_options``)."""
        if self.data_options is None:
            return {}, []
        table, notes = _resolve(self.data_options)(data)
        return dict(table), list(notes)

    def engine_factory(self) -> Callable[[Any], Engine]:
        """The engine class or factory (imported on first use)."""
        factory = _resolve(self.engine)
        if not callable(factory):
            raise TypeError(f"engine {self.name!r}: engine {self.engine!r} is not callable")
        return typing.cast(Callable[[Any], Engine], factory)

    def check_promises(self, engine: object, options: object) -> None:
        """Refuse an engine (or options) that lacks a declared capability's methods.

        Raises
        ------
        TypeError
            Naming the capability and the method to implement.
        """
        if not isinstance(engine, Engine):
            raise TypeError(
                f"engine {self.name!r}: {type(engine).__name__} is not an Engine (needs a "
                "`name` and fit(data, *, seed, keep_posterior) -> FitResult)"
            )
        if engine.name != self.name:
            raise TypeError(
                f"engine {self.name!r}: {type(engine).__name__}.name is {engine.name!r}; "
                f"set it to the registered name {self.name!r}"
            )
        for cap in sorted(self.capabilities):
            if cap not in _PROMISES:  # a promise of fit itself (crossed): nothing to probe
                continue
            protocol, where, method = _PROMISES[cap]
            obj = engine if where == "engine" else options
            if not isinstance(obj, protocol):
                raise TypeError(
                    f"engine {self.name!r} declares capability {cap.value!r} but its "
                    f"{where} ({type(obj).__name__}) has no {method}; implement it or drop "
                    f"{cap.value!r} from the EngineSpec's capabilities"
                )
