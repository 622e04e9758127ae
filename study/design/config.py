"""Study configuration: frozen dataclasses loaded from TOML and validated.

A configuration is given as a preset name (``seed``, ``default``: TOML files shipped in
``study/presets``) or as a path to a TOML file.  Every problem raises
:class:`ConfigError` (a ``ValueError``) whose message names the key, echoes the value
and says what is allowed; the CLI prints it as one line and exits with code 2.
"""

from __future__ import annotations

import hashlib
import math
import tomllib
from dataclasses import dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from study.tomlwrite import dumps_toml

PRESETS = ("default", "seed")
DISTRIBUTIONS = ("rounded_uniform", "uniform", "normal")
KNOWN_ENGINES = ("reml", "bayes")


class ConfigError(ValueError):
    """A configuration that cannot be used; the message says what to change."""


def _fail(key: str, value: object, rule: str) -> ConfigError:
    return ConfigError(f"{key} = {value!r}: {rule}")


def _number(key: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _fail(key, value, "must be a number")
    if not math.isfinite(value):
        raise _fail(key, value, "must be finite")
    return float(value)


def _integer(key: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(key, value, f"must be an integer >= {minimum}")
    if value < minimum:
        raise _fail(key, value, f"must be >= {minimum}")
    return value


def _numbers(key: str, value: object) -> tuple[float, ...]:
    if not isinstance(value, list | tuple):
        raise _fail(key, value, "must be a list of numbers")
    return tuple(_number(f"{key}[{i}]", v) for i, v in enumerate(value))


@dataclass(frozen=True)
class PredictorSpec:
    """Distribution of each predictor value (drawn once per study, per subject).

    ``rounded_uniform``: ``round(Uniform(low, high))`` (the report's default);
    ``uniform``: ``Uniform(low, high)``; ``normal``: ``Normal(mean, sd)``.
    """

    distribution: str = "rounded_uniform"
    low: float = 1.0
    high: float = 20.0
    mean: float = 0.0
    sd: float = 1.0

    def __post_init__(self) -> None:
        if self.distribution not in DISTRIBUTIONS:
            raise _fail(
                "design.predictor.distribution",
                self.distribution,
                f"must be one of {', '.join(DISTRIBUTIONS)}",
            )
        for name in ("low", "high", "mean", "sd"):
            object.__setattr__(self, name, _number(f"design.predictor.{name}", getattr(self, name)))
        if self.distribution != "normal" and not self.low < self.high:
            raise _fail("design.predictor.high", self.high, f"must be > low ({self.low})")
        if self.distribution == "normal" and not self.sd > 0:
            raise _fail("design.predictor.sd", self.sd, "must be > 0")

    def draw(self, rng: np.random.Generator, size: int) -> np.ndarray:
        """Draw ``size`` predictor values."""
        if self.distribution == "normal":
            return rng.normal(self.mean, self.sd, size)
        x = rng.uniform(self.low, self.high, size)
        return np.round(x) if self.distribution == "rounded_uniform" else x


@dataclass(frozen=True)
class DesignConfig:
    """The data-generating model ``y_i = X_i beta + X_i u_i + e_i``.

    Parameters
    ----------
    groups : int
        Number of groups K (>= 2).
    group_size : int or tuple of int
        Subjects per group: one number for all, or one per group.
    predictors : tuple of str
        Predictor names (p >= 1); random slopes on all of them.
    beta : tuple of float
        Fixed effects, intercept first (length p + 1).
    re_sd : tuple of float
        Random-effect SDs, intercept first (length p + 1, each > 0).
    re_cor : tuple of tuple of float
        Random-effect correlation matrix ((p+1) x (p+1), positive definite).
    sigma : float
        Residual SD (> 0).
    repeats : int
        Each group's subjects are repeated this many times with new noise (the
        report's inner loop; 1 = no repetition).
    fixed_random_effects : bool
        Draw u once per study and reuse it (the report's quirk) instead of redrawing.
    predictor : PredictorSpec
        Distribution of the predictor values.
    """

    groups: int = 40
    group_size: int | tuple[int, ...] = 50
    predictors: tuple[str, ...] = ("X",)
    beta: tuple[float, ...] = (5.0, 2.0)
    re_sd: tuple[float, ...] = (1.0, 2.0)
    re_cor: tuple[tuple[float, ...], ...] = ((1.0, 0.0), (0.0, 1.0))
    sigma: float = 1.0
    repeats: int = 1
    fixed_random_effects: bool = False
    predictor: PredictorSpec = field(default_factory=PredictorSpec)

    def __post_init__(self) -> None:
        groups = _integer("design.groups", self.groups, 2)
        if isinstance(self.group_size, list | tuple):
            sizes = tuple(
                _integer(f"design.group_size[{i}]", v, 1) for i, v in enumerate(self.group_size)
            )
            if len(sizes) != groups:
                raise _fail(
                    "design.group_size",
                    list(sizes),
                    f"must be one number or a list of {groups} (one per group)",
                )
            group_size: int | tuple[int, ...] = sizes
        else:
            group_size = _integer("design.group_size", self.group_size, 1)
        if not isinstance(self.predictors, list | tuple) or not self.predictors:
            raise _fail("design.predictors", self.predictors, "must be a list of >= 1 names")
        predictors = tuple(self.predictors)
        for i, name in enumerate(predictors):
            if not isinstance(name, str) or not name.isidentifier():
                raise _fail(f"design.predictors[{i}]", name, "must be an identifier-like name")
        if len(set(predictors)) != len(predictors):
            raise _fail("design.predictors", list(predictors), "names must be distinct")
        q = len(predictors) + 1
        beta = _numbers("design.beta", self.beta)
        if len(beta) != q:
            raise _fail(
                "design.beta",
                list(beta),
                f"must have {q} values (intercept then {', '.join(predictors)})",
            )
        re_sd = _numbers("design.re_sd", self.re_sd)
        if len(re_sd) != q:
            raise _fail("design.re_sd", list(re_sd), f"must have {q} values (intercept first)")
        for i, s in enumerate(re_sd):
            if not s > 0:
                raise _fail(f"design.re_sd[{i}]", s, "must be > 0")
        if not isinstance(self.re_cor, list | tuple) or len(self.re_cor) != q:
            raise _fail("design.re_cor", self.re_cor, f"must be a {q} x {q} correlation matrix")
        re_cor = tuple(_numbers(f"design.re_cor[{i}]", row) for i, row in enumerate(self.re_cor))
        cor = np.array(re_cor)
        if cor.shape != (q, q):
            raise _fail("design.re_cor", self.re_cor, f"must be a {q} x {q} correlation matrix")
        if not np.allclose(np.diag(cor), 1.0) or not np.allclose(cor, cor.T):
            raise _fail("design.re_cor", self.re_cor, "must be symmetric with ones on the diagonal")
        if np.linalg.eigvalsh(cor).min() <= 1e-10:
            raise _fail(
                "design.re_cor",
                [list(r) for r in re_cor],
                "must be positive definite (all eigenvalues > 0); |correlations| < 1",
            )
        sigma = _number("design.sigma", self.sigma)
        if not sigma > 0:
            raise _fail("design.sigma", sigma, "must be > 0")
        repeats = _integer("design.repeats", self.repeats, 1)
        if not isinstance(self.fixed_random_effects, bool):
            raise _fail(
                "design.fixed_random_effects", self.fixed_random_effects, "must be true or false"
            )
        if not isinstance(self.predictor, PredictorSpec):
            raise _fail("design.predictor", self.predictor, "must be a table")
        for name, value in (
            ("groups", groups),
            ("group_size", group_size),
            ("predictors", predictors),
            ("beta", beta),
            ("re_sd", re_sd),
            ("re_cor", re_cor),
            ("sigma", sigma),
            ("repeats", repeats),
        ):
            object.__setattr__(self, name, value)

    @property
    def q(self) -> int:
        """Number of fixed (= random) effects, intercept included."""
        return len(self.predictors) + 1

    @property
    def sizes(self) -> np.ndarray:
        """Subjects per group, shape (K,)."""
        if isinstance(self.group_size, tuple):
            return np.array(self.group_size, dtype=np.int64)
        return np.full(self.groups, self.group_size, dtype=np.int64)

    @property
    def D(self) -> np.ndarray:
        """Random-effects covariance matrix ``diag(sd) C diag(sd)``."""
        sd = np.array(self.re_sd)
        return sd[:, None] * np.array(self.re_cor) * sd[None, :]


@dataclass(frozen=True)
class StudyConfig:
    """A whole study: name, design, replicate count, engines, seed.

    ``engine_options`` maps an engine name to its option table (``[engines.NAME]`` in
    TOML), validated by that engine; ``replicates`` is not part of :meth:`hash`, so a
    finished run can be extended.  ``keep_draws``: the full posterior of the first
    ``keep_draws`` replicates is kept beside the results (engines with draws only).
    """

    name: str
    design: DesignConfig
    replicates: int = 200
    seed: int = 20181101
    level: float = 0.95
    engines: tuple[str, ...] = ("reml", "bayes")
    engine_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    keep_draws: int = 3
    source: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name or any(c in self.name for c in "/\\"):
            raise _fail("name", self.name, "must be a non-empty name without slashes")
        _integer("replicates", self.replicates, 1)
        _integer("seed", self.seed, 0)
        _integer("keep_draws", self.keep_draws, 0)
        level = _number("level", self.level)
        if not 0 < level < 1:
            raise _fail("level", level, "must be between 0 and 1 (e.g. 0.95)")
        if not isinstance(self.engines, list | tuple) or not self.engines:
            raise _fail("engines", self.engines, f"must be a non-empty list from {KNOWN_ENGINES}")
        for e in self.engines:
            if e not in KNOWN_ENGINES:
                raise _fail("engines", list(self.engines), f"each must be one of {KNOWN_ENGINES}")
        if len(set(self.engines)) != len(self.engines):
            raise _fail("engines", list(self.engines), "names must be distinct")
        object.__setattr__(self, "engines", tuple(self.engines))
        for key in self.engine_options:
            if key not in KNOWN_ENGINES:
                raise _fail(f"engines.{key}", "{...}", f"unknown engine; known: {KNOWN_ENGINES}")

    def to_toml(self) -> str:
        """The configuration as TOML text (the ``source`` text when loaded from a file)."""
        return self.source or dumps_toml(self)

    def hash(self) -> str:
        """Hash of everything that determines a replicate's results (not ``replicates``)."""
        d = self.design
        key = repr(
            (
                self.seed,
                self.level,
                d.groups,
                d.group_size,
                d.predictors,
                d.beta,
                d.re_sd,
                d.re_cor,
                d.sigma,
                d.repeats,
                d.fixed_random_effects,
                tuple(getattr(d.predictor, f.name) for f in fields(d.predictor)),
                sorted((k, repr(sorted(v.items()))) for k, v in self.engine_options.items()),
            )
        )
        return hashlib.sha256(key.encode()).hexdigest()[:16]

    def with_replicates(self, n: int) -> StudyConfig:
        """A copy with another replicate count."""
        return _replace(self, replicates=n)

    def with_engines(self, engines: tuple[str, ...]) -> StudyConfig:
        """A copy with another engine list."""
        return _replace(self, engines=engines)


def _replace(cfg: StudyConfig, **changes: Any) -> StudyConfig:
    import dataclasses

    new = dataclasses.replace(cfg, **changes)
    object.__setattr__(new, "source", dumps_toml(new))
    return new


_TOP_KEYS = {"name", "replicates", "seed", "level", "engines", "design", "keep_draws"}
_DESIGN_KEYS = {f.name for f in fields(DesignConfig)}
_PREDICTOR_KEYS = {f.name for f in fields(PredictorSpec)}


def _check_keys(table: dict[str, Any], allowed: set[str], where: str) -> None:
    for key in table:
        if key not in allowed:
            prefix = f"{where}." if where else ""
            scope = f" in [{where}]" if where else ""
            raise ConfigError(
                f"unknown key {prefix}{key!s}; allowed keys{scope}: {', '.join(sorted(allowed))}"
            )


def config_from_dict(raw: dict[str, Any], *, default_name: str, source: str = "") -> StudyConfig:
    """Build a validated :class:`StudyConfig` from a parsed TOML table."""
    raw = dict(raw)
    engines_table = raw.pop("engines", ["reml", "bayes"])
    engine_options: dict[str, dict[str, Any]] = {}
    if isinstance(engines_table, dict):
        # [engines.reml] / [engines.bayes] tables: the keys are the engines to run, unless
        # an explicit `run = [...]` list says otherwise
        engines_table = dict(engines_table)
        run = engines_table.pop("run", None)
        for name, opts in engines_table.items():
            if not isinstance(opts, dict):
                raise _fail(f"engines.{name}", opts, "must be a table of engine options")
            engine_options[name] = opts
        engines_list = run if run is not None else list(engine_options)
    else:
        engines_list = engines_table
    _check_keys(raw, _TOP_KEYS - {"engines"}, "")
    design_raw = raw.pop("design", {})
    if not isinstance(design_raw, dict):
        raise _fail("design", design_raw, "must be a table")
    design_raw = dict(design_raw)
    _check_keys(design_raw, _DESIGN_KEYS, "design")
    pred_raw = design_raw.pop("predictor", {})
    if not isinstance(pred_raw, dict):
        raise _fail("design.predictor", pred_raw, "must be a table")
    _check_keys(pred_raw, _PREDICTOR_KEYS, "design.predictor")
    design = DesignConfig(**design_raw, predictor=PredictorSpec(**pred_raw))
    cfg = StudyConfig(
        name=raw.pop("name", default_name),
        design=design,
        engines=tuple(engines_list) if isinstance(engines_list, list) else engines_list,
        engine_options=engine_options,
        **raw,
    )
    _validate_engine_options(cfg)
    object.__setattr__(cfg, "source", source or dumps_toml(cfg))
    return cfg


def _validate_engine_options(cfg: StudyConfig) -> None:
    from models.registry import EngineOptionsError, validate_options

    for name, opts in cfg.engine_options.items():
        try:
            validate_options(name, opts, level=cfg.level)
        except EngineOptionsError as err:
            raise ConfigError(f"engines.{name}: {err}") from err


def load_config(spec: str | Path) -> StudyConfig:
    """Load a preset by name (``seed``, ``default``) or a TOML file by path."""
    text: str
    name = str(spec)
    if name in PRESETS:
        text = resources.files("study.design.presets").joinpath(f"{name}.toml").read_text()
        default_name = name
    else:
        path = Path(spec)
        if not path.exists():
            raise ConfigError(
                f"config {name!r}: no such file and not a preset; "
                f"give a TOML path or one of: {', '.join(PRESETS)}"
            )
        if path.is_dir():
            raise ConfigError(f"config {name!r} is a directory; give a TOML file or a preset")
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as err:
            raise ConfigError(f"config {name!r} cannot be read ({err}); check the file") from err
        default_name = path.stem
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"config {name!r} is not valid TOML ({err}); fix the syntax") from err
    try:
        return config_from_dict(raw, default_name=default_name, source=text)
    except TypeError as err:  # e.g. a scalar where a table was expected
        raise ConfigError(f"config {name!r}: {err}") from err
