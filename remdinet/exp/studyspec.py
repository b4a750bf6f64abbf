"""Study specification files (``studies/NAME.toml``): schema, parsing and validation.

Schema::

    [study]
    name = "color_clamps"          # optional, default: the file name
    description = "..."
    preset = "quick"               # experiments/<preset>.toml, the base of every trial
    metric = "psnr"                # psnr | ssim | ms_ssim; or metrics = ["psnr", "ssim"]
    direction = "maximize"         # or directions = [...] (one per metric); default maximize
    n_trials = 30                  # per invocation; a resumed study adds this many
    timeout = 3600                 # seconds, optional
    sampler = "tpe"                # tpe | random | cmaes | grid | nsga2
    pruner = "median"              # median | percentile | successive_halving | hyperband |
                                   # threshold | patient | wilcoxon | none (multi-objective: none)
    seed = 0
    baseline = true                # enqueue the base config's own values as the first trial
    include = ["other_study"]      # merge the [fixed] and [space] tables of other study files
    [study.sampler_options]        # keyword arguments of the Optuna sampler (TOML values only)
    [study.pruner_options]         # keyword arguments of the Optuna pruner
    # patient: patience, min_delta, and optionally the pruner it defers to,
    # wrapped_pruner = "median" with its own table [study.pruner_options.wrapped_pruner_options]

Every pruner sees one value per validation epoch, step = epoch, of ``val_<metric>`` (the
study's objective). ``wilcoxon`` pairs those steps with the best trial's: it prunes a trial
whose learning curve lies below the best one's epoch by epoch (Optuna meant it for one value per
problem instance; epochs are not independent, so read ``p_threshold`` as a knob, not an error
rate).

    [fixed]                        # flat config overrides applied to every trial
    "training.num_epochs" = 12

    [space."clamps.enhancer_weight_min"]
    type = "float"                 # float | int | categorical
    low = -0.2
    high = 1.0
    log = false                    # optional
    step = 0.01                    # optional
    # categorical: choices = [...]

The keys of ``[study]`` (:class:`StudyTable`) and of a ``[space]`` parameter (:data:`PARAM_KINDS`)
are declared with the config's field machinery (:func:`remdinet.config.setting`, read by
:func:`remdinet.config.read_table`); each table's ``validate``/``spec`` adds the rules between keys.
Everything is checked before any training, and every error names the file and the offending key:
unknown config keys, a type that does not match the config field, empty or mistyped choices,
``low >= high``, ``log`` with ``low <= 0``, bounds outside the field's allowed range, unknown
sampler, pruner or option names. The config must also stay valid over the whole space: each
parameter is resolved at its bounds (or at every choice), and every *pair* of parameters at their
four corners, so a cross-field rule such as ``clamps.enhancer_weight_min <=
clamps.enhancer_weight_max`` that two overlapping ranges could break is rejected up front, naming
both keys (a min/max pair is therefore searched with ranges that meet but do not overlap). Corners
cover the ordering rules; a rule the corners miss (divisibility, a rule over three keys) makes a
trial whose sampled config fails validation: it is recorded as FAIL with the reason and the study
goes on.
"""
from __future__ import annotations

import contextlib
import importlib.util
import inspect
import itertools
import math
import re
import sys
from dataclasses import MISSING, dataclass, field
from pathlib import Path
from typing import Any

import optuna

from remdinet.config import ConfigError, coerce, field_spec, read_table, setting
from remdinet.metrics import MS_SSIM_MIN_SIDE
from remdinet.resolve import resolve

from .engine import experimental_ok
from .names import name_problem
from .presets import find_toml, load_preset

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised only on Python 3.10
    import tomli as tomllib


class StudySpecError(ConfigError):
    """A study file is invalid; the message names the file and the key."""


METRICS = ("psnr", "ssim", "ms_ssim")
DIRECTIONS = ("maximize", "minimize")
SAMPLERS = {
    "tpe": optuna.samplers.TPESampler,
    "random": optuna.samplers.RandomSampler,
    "cmaes": optuna.samplers.CmaEsSampler,
    "grid": optuna.samplers.GridSampler,
    "nsga2": optuna.samplers.NSGAIISampler,
}
PRUNERS = {
    "median": optuna.pruners.MedianPruner,
    "percentile": optuna.pruners.PercentilePruner,
    "successive_halving": optuna.pruners.SuccessiveHalvingPruner,
    "hyperband": optuna.pruners.HyperbandPruner,
    "threshold": optuna.pruners.ThresholdPruner,
    "patient": optuna.pruners.PatientPruner,
    "wilcoxon": optuna.pruners.WilcoxonPruner,
    "none": optuna.pruners.NopPruner,
}
# patient's pruner_options name the pruner it wraps and give that pruner's own options
WRAPPED, WRAPPED_OPTIONS = "wrapped_pruner", "wrapped_pruner_options"
# names an annotation may use and still take a TOML value; any other class (Callable,
# BaseSampler, FrozenTrial, ...) is a Python object that no study file can give
_TOML_TYPES = {"Any", "Dict", "List", "Literal", "Mapping", "None", "Optional", "Sequence", "Tuple",
               "Union"}
_TABLES = {"study", "fixed", "space"}


@dataclass(frozen=True)
class ParamSpec:
    key: str
    kind: str
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: tuple = ()

    def suggest(self, trial: optuna.Trial) -> Any:
        if self.kind == "float":
            return trial.suggest_float(self.key, self.low, self.high, log=self.log, step=self.step)
        if self.kind == "int":
            return trial.suggest_int(self.key, self.low, self.high, log=self.log,
                                     step=self.step or 1)
        return trial.suggest_categorical(self.key, list(self.choices))

    def corners(self) -> list[Any]:
        return list(self.choices) if self.kind == "categorical" else [self.low, self.high]

    def grid(self) -> list[Any]:
        """The values a grid sampler visits (categorical, int, or float with a step)."""
        if self.kind == "categorical":
            return list(self.choices)
        if self.kind == "int":
            return list(range(self.low, self.high + 1, self.step or 1))
        n = int(math.floor((self.high - self.low) / self.step + 1e-9))
        return [self.low + i * self.step for i in range(n + 1)]

    def contains(self, value: Any) -> bool:
        if self.kind == "categorical":
            return value in self.choices
        if not self.low <= value <= self.high:
            return False
        if self.step is None:
            return True
        k = (value - self.low) / self.step
        return abs(k - round(k)) < 1e-9

    def describe(self) -> dict[str, Any]:
        if self.kind == "categorical":
            return {"type": "categorical", "choices": list(self.choices)}
        return {"type": self.kind, "low": self.low, "high": self.high, "log": self.log,
                "step": self.step}


@dataclass
class FloatRange:
    """``[space."key"]`` with ``type = "float"``: the arguments of Optuna's ``suggest_float``."""
    low: float = setting(MISSING, doc="the lowest value; the config field's range bounds it")
    high: float = setting(MISSING, doc="the highest value, above low")
    log: bool = setting(False, doc="sample on a log scale (needs low > 0; not with step)")
    step: float | None = setting(None, doc="spacing of the values, > 0 (the grid sampler needs it)")

    def spec(self, key: str, kind: str) -> ParamSpec:
        """The parameter, after the rules between its keys and against the config field."""
        where = f'[space."{key}"]'
        if self.low >= self.high:
            raise ConfigError(f"{where}: low ({self.low}) must be less than high ({self.high})")
        if self.log and self.low <= 0:
            raise ConfigError(f"{where}: log = true needs low > 0, got low = {self.low}")
        if self.step is not None and self.step <= 0:
            raise ConfigError(f"{where}: step must be > 0, got {self.step}")
        if self.log and self.step is not None:
            raise ConfigError(f"{where}: log and step cannot be combined (Optuna samples one or "
                              f"the other)")
        for bound, value in (("low", self.low), ("high", self.high)):
            try:
                coerce(key, value)
            except ConfigError as exc:
                raise ConfigError(f"{where}: {bound} = {value}: {exc}") from None
        return ParamSpec(key, kind, low=self.low, high=self.high, log=self.log, step=self.step)


@dataclass
class IntRange(FloatRange):
    """``type = "int"``: :class:`FloatRange`'s keys with integer values (``suggest_int``)."""
    low: int = setting(MISSING)
    high: int = setting(MISSING)
    step: int | None = setting(None)


@dataclass
class Choices:
    """``type = "categorical"``: the values of ``suggest_categorical``."""
    choices: list[Any] = setting(MISSING, doc="each a value of the config field, of its type")

    def spec(self, key: str, kind: str) -> ParamSpec:
        where = f'[space."{key}"]'
        if not self.choices:
            raise ConfigError(f"{where}: categorical needs a non-empty list 'choices'")
        field_type = _field_type(key)
        values = []
        for c in self.choices:
            try:
                values.append(coerce(key, c))
            except ConfigError as exc:
                raise ConfigError(f"{where}: choice {c!r} does not fit the config field: {exc}"
                                  ) from None
            int_for_float = isinstance(c, int) and not isinstance(c, bool) and field_type == "float"
            if type(c) is not type(values[-1]) and not int_for_float:
                raise ConfigError(f"{where}: choice {c!r} is a {type(c).__name__}, the config "
                                  f"field is {field_type}")
        if len(set(map(repr, values))) != len(values):
            raise ConfigError(f"{where}: duplicate choices {self.choices!r}")
        return ParamSpec(key, kind, choices=tuple(values))


PARAM_KINDS = {"float": FloatRange, "int": IntRange, "categorical": Choices}


@dataclass
class StudyTable:
    """The ``[study]`` table, declared like the config's fields (:func:`remdinet.config.setting`);
    :meth:`validate` adds the rules between keys."""
    name: str | None = setting(None, doc="names the study's folders and MLflow experiment; "
                                         "default: the file name")
    description: str = setting("", doc="one line for listings")
    preset: str | None = setting(None, doc="experiments/<preset>.toml, the base of every trial")
    metric: str | None = setting(None, choices=METRICS, noun="metric",
                                 doc="the objective (default psnr)")
    metrics: list | None = setting(None, choices=METRICS, noun="metric",
                                   doc="several objectives: a multi-objective study")
    direction: str | None = setting(None, choices=DIRECTIONS,
                                    doc="of every objective (default maximize)")
    directions: list | None = setting(None, choices=DIRECTIONS, doc="one per metric")
    n_trials: int | None = setting(None, 1, doc="per invocation; a resumed study adds this many")
    timeout: float | None = setting(None, doc="seconds per invocation, > 0")
    sampler: str = setting("tpe", choices=tuple(SAMPLERS), noun="sampler")
    pruner: str | None = setting(None, choices=tuple(PRUNERS), noun="pruner",
                                 doc="default median (none for a multi-objective study)")
    seed: int = setting(0, 0, doc="seeds the sampler")
    baseline: bool = setting(False, doc="enqueue the base config's own values as the first trial")
    include: list = setting([], doc="study files whose [fixed] and [space] tables merge in")
    sampler_options: dict = setting({}, doc="keyword arguments of the Optuna sampler")
    pruner_options: dict = setting({}, doc="keyword arguments of the Optuna pruner")

    def validate(self, stem: str, space: dict[str, ParamSpec]) -> None:
        """The rules between keys and with the space; fills the defaults that depend on other
        keys (name: ``stem``, the file name; metrics, directions, pruner)."""
        self._objectives()
        multi = len(self.metrics) > 1
        self._sampler(space, multi)
        self.pruner = self.pruner or ("none" if multi else "median")
        if multi and self.pruner != "none":
            raise ConfigError('[study] pruner: Optuna cannot prune multi-objective studies; set '
                              'pruner = "none"')
        if self.timeout is not None and self.timeout <= 0:
            raise ConfigError(f"[study] timeout: must be > 0 seconds, got {self.timeout}")
        problem = name_problem(stem if self.name is None else self.name)  # it names folders
        if problem is not None:
            raise ConfigError(f"[study] name{' (the file name)' if self.name is None else ''}: "
                              f"{problem}")
        self.name = stem if self.name is None else self.name

    def _objectives(self) -> None:
        """metric(s) and direction(s): one form of each, one direction per metric."""
        if self.metric is not None and self.metrics is not None:
            raise ConfigError("[study]: give either metric or metrics, not both")
        if self.direction is not None and self.directions is not None:
            raise ConfigError("[study]: give either direction or directions, not both")
        self.metrics = [self.metric or "psnr"] if self.metrics is None else self.metrics
        if not self.metrics:
            raise ConfigError("[study] metrics: must be a non-empty list")
        if len(set(self.metrics)) != len(self.metrics):
            raise ConfigError(f"[study] metrics: duplicate metrics {self.metrics}")
        if self.directions is None:
            self.directions = [self.direction or "maximize"] * len(self.metrics)
        if len(self.directions) != len(self.metrics):
            raise ConfigError(f"[study] directions: needs one direction per metric "
                              f"({len(self.metrics)})")

    def _sampler(self, space: dict[str, ParamSpec], multi: bool) -> None:
        """What the chosen sampler needs: its package, one objective, steps, no options."""
        if self.sampler == "cmaes":
            if importlib.util.find_spec("cmaes") is None:
                raise ConfigError("[study] sampler: 'cmaes' needs the cmaes package "
                                  "(pip install cmaes)")
            if multi:
                raise ConfigError("[study] sampler: 'cmaes' is single-objective only")
        if self.sampler == "grid":
            stepless = [k for k, p in space.items() if p.kind == "float" and p.step is None]
            if stepless:
                raise ConfigError(f'[space."{stepless[0]}"]: the grid sampler needs a step for '
                                  f'float parameters')
            if self.sampler_options:
                raise ConfigError("[study.sampler_options]: the grid sampler takes no options: "
                                  "its points run in order, each once")


@dataclass
class StudySpec:
    name: str
    path: Path
    preset: str | None
    metrics: tuple[str, ...]
    directions: tuple[str, ...]
    n_trials: int | None
    timeout: float | None
    sampler: str
    pruner: str
    seed: int
    baseline: bool
    description: str = ""
    sampler_options: dict[str, Any] = field(default_factory=dict)
    pruner_options: dict[str, Any] = field(default_factory=dict)
    fixed: dict[str, Any] = field(default_factory=dict)
    space: dict[str, ParamSpec] = field(default_factory=dict)
    base: dict[str, Any] = field(default_factory=dict)  # preset + [fixed] + CLI overrides

    @property
    def multi_objective(self) -> bool:
        return len(self.metrics) > 1

    def overrides(self, params: dict[str, Any]) -> dict[str, Any]:
        return {**self.base, **params}

    def baseline_params(self) -> dict[str, Any]:
        flat = resolve(self.base).to_flat()
        return {k: flat[k] for k in self.space}

    def make_sampler(self, n_existing_trials: int) -> optuna.samplers.BaseSampler:
        """The sampler, seeded with ``seed + n_existing_trials`` so a resumed study does not
        replay the random start-up suggestions of the first session (the study's workers pass the
        trial number, so no two trials share a random stream).

        A grid study enqueues each of its points with every parameter fixed, so no sampler is
        consulted; Optuna's GridSampler is not used because it counts only the points it handed
        out itself (it would re-run enqueued points, and fails on a one-point grid)."""
        if self.sampler == "grid":
            return optuna.samplers.RandomSampler(seed=self.seed)
        return SAMPLERS[self.sampler](seed=self.seed + n_existing_trials, **self.sampler_options)

    def make_pruner(self) -> optuna.pruners.BasePruner:
        return build_pruner(self.pruner, self.pruner_options)


def build_pruner(name: str, options: dict[str, Any]) -> optuna.pruners.BasePruner:
    """The pruner ``name`` of :data:`PRUNERS` with its validated ``options``; ``patient`` first
    builds the pruner it wraps (none: it prunes on patience alone)."""
    options = dict(options)
    if name == "patient":
        inner = options.pop(WRAPPED, "none")
        inner_options = options.pop(WRAPPED_OPTIONS, {})
        options[WRAPPED] = None if inner == "none" else build_pruner(inner, inner_options)
    with experimental_ok():  # WilcoxonPruner is experimental in Optuna
        return PRUNERS[name](**options)


def _err(src: str, where: str, msg: str) -> StudySpecError:
    return StudySpecError(f"{src}: {where}: {msg}")


def _read(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise StudySpecError(f"{path}: invalid TOML: {exc}") from None


def spec_description(path: Path) -> str:
    """``[study] description`` of a study file, the rest not validated (for listings)."""
    study = _read(path).get("study", {})
    return str(study.get("description", "")) if isinstance(study, dict) else ""


def _flat_keys(src: str, table: dict[str, Any], where: str, leaf) -> dict[str, Any]:
    """``{"sec.key": v}`` from a table written with quoted flat keys or as nested sections."""
    out: dict[str, Any] = {}
    for name, value in table.items():
        if "." in name:
            out[name] = value
        elif isinstance(value, dict) and not leaf(value):
            for sub, v in value.items():
                out[f"{name}.{sub}"] = v
        else:
            raise _err(src, f"[{where}] {name!r}", "expected a 'section.key' config key")
    return out


@contextlib.contextmanager
def _in_file(src: str):
    """A ConfigError raised inside becomes a StudySpecError naming the file."""
    try:
        yield
    except StudySpecError:
        raise
    except ConfigError as exc:
        raise StudySpecError(f"{src}: {exc}") from None


def _field_type(key: str) -> str:
    typ, _ = field_spec(key)
    return getattr(typ, "__name__", str(typ))


def _param(src: str, key: str, raw: Any) -> ParamSpec:
    where = f'[space."{key}"]'
    try:
        field_type = _field_type(key)
    except ConfigError as exc:
        raise _err(src, where, str(exc)) from None
    if not isinstance(raw, dict):
        raise _err(src, where, "must be a table with type = float | int | categorical")
    options = dict(raw)
    kind = options.pop("type", None)
    if kind not in PARAM_KINDS:
        raise _err(src, where, f"type must be one of {', '.join(PARAM_KINDS)}; got {kind!r}")
    if field_type == "list":
        raise _err(src, where, "list-valued config keys cannot be searched")
    if kind != "categorical" and field_type != kind:
        raise _err(src, where, f"type {kind!r} does not match the config field, which is "
                               f"{field_type} (use type = \"{field_type}\" or categorical)")
    with _in_file(src):
        return read_table(PARAM_KINDS[kind], options, where, noun="option").spec(key, kind)


def _options(src: str, where: str, raw: Any, factory, label: str) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise _err(src, where, "must be a table of keyword arguments")
    params = inspect.signature(factory).parameters
    named = (WRAPPED, WRAPPED_OPTIONS) if factory is PRUNERS["patient"] else ()
    unknown = sorted(set(raw) - set(params) - {"self", *named})
    if unknown:
        valid = [p for p in [*params, *named] if p not in ("self", "seed", "search_space")]
        raise _err(src, where, f"unknown option(s) {', '.join(unknown)} for {label}; "
                               f"valid: {', '.join(dict.fromkeys(valid))}")
    for key in sorted(set(raw) - set(named)):
        annotation = params[key].annotation  # a string under Optuna's postponed annotations
        annotation = annotation if isinstance(annotation, str) else inspect.formatannotation(
            annotation)
        if set(re.findall(r"\b[A-Z]\w*", annotation)) - _TOML_TYPES:
            raise _err(src, f"{where} {key}", f"takes a Python object ({annotation}), which a "
                                              f"study file cannot give; leave it out")
    return dict(raw)


def _pruner_options(src: str, where: str, name: str, raw: Any) -> dict[str, Any]:
    options = _options(src, where, raw, PRUNERS[name], name)
    if name == "patient":
        inner = options.get(WRAPPED, "none")
        if inner not in PRUNERS:
            raise _err(src, f"{where} {WRAPPED}", f"unknown pruner {inner!r}; valid: "
                                                  f"{', '.join(PRUNERS)}")
        options[WRAPPED_OPTIONS] = _pruner_options(src, f"{where} {WRAPPED_OPTIONS}", inner,
                                                   options.get(WRAPPED_OPTIONS))
    return options


def _load_tables(path: Path, seen: tuple[Path, ...]
                 ) -> tuple[StudyTable, dict[str, Any], dict[str, Any]]:
    """(study table, fixed, space) of one file with its includes merged in."""
    src = str(path)
    doc = _read(path)
    unknown = set(doc) - _TABLES
    if unknown:
        raise _err(src, "top level", f"unknown table(s) {', '.join(sorted(unknown))}; "
                                     f"expected {', '.join(sorted(_TABLES))}")
    study = doc.get("study", {})
    if not isinstance(study, dict):
        raise _err(src, "[study]", "must be a table")
    with _in_file(src):
        study = read_table(StudyTable, study, "[study]")
    fixed = _flat_keys(src, doc.get("fixed", {}), "fixed", leaf=lambda v: False)
    space = _flat_keys(src, doc.get("space", {}), "space", leaf=lambda v: "type" in v)
    for name in study.include:
        inc = find_toml("studies", name)
        if inc.resolve() in seen:
            raise _err(src, "[study] include", f"include cycle through {inc}")
        _, inc_fixed, inc_space = _load_tables(inc, seen + (inc.resolve(),))
        for target, extra, table in ((fixed, inc_fixed, "fixed"), (space, inc_space, "space")):
            clash = sorted(set(target) & set(extra))
            if clash:
                raise _err(src, f"[{table}]", f"key(s) {', '.join(clash)} also set by included "
                                              f"study {name!r}")
            target.update(extra)
    return study, fixed, space


def _check_resolvable(src: str, spec: StudySpec) -> None:
    try:
        resolve(spec.base)
    except ConfigError as exc:
        raise _err(src, "base config (preset + [fixed] + --set)", str(exc)) from None
    for key, p in spec.space.items():
        for v in p.corners():
            try:
                resolve(spec.overrides({key: v}))
            except ConfigError as exc:
                raise _err(src, f'[space."{key}"]', f"value {v!r} makes the config invalid: "
                                                    f"{exc}") from None
    for (ka, pa), (kb, pb) in itertools.combinations(spec.space.items(), 2):
        for va, vb in itertools.product(pa.corners(), pb.corners()):
            try:
                resolve(spec.overrides({ka: va, kb: vb}))
            except ConfigError as exc:
                raise _err(src, f'[space."{ka}"] and [space."{kb}"]',
                           f"the combination {ka} = {va!r}, {kb} = {vb!r} lies in the space but "
                           f"makes the config invalid ({exc}); narrow the ranges so that no such "
                           f"combination can be sampled") from None


def _coerce_fixed(src: str, raw: dict[str, Any]) -> dict[str, Any]:
    fixed: dict[str, Any] = {}
    for key, value in raw.items():
        try:
            fixed[key] = coerce(key, value)
        except ConfigError as exc:
            raise _err(src, f'[fixed] "{key}"', str(exc)) from None
    return fixed


def _check_searched_keys(src: str, fixed: dict[str, Any], space: dict[str, ParamSpec],
                         overrides: dict[str, Any]) -> None:
    """Something is searched, and no searched key is also fixed, in the file or from the CLI."""
    if not space:
        raise _err(src, "[space]", "the search space is empty")
    clash = sorted(set(fixed) & set(space))
    if clash:
        raise _err(src, f'[fixed] "{clash[0]}"', "is also searched in [space]")
    clash = sorted(set(overrides) & set(space))
    if clash:
        raise _err(src, f'"{clash[0]}" (--set or --config)', "is searched in [space]; it cannot "
                                                             "be fixed from the CLI")


def _check_built(src: str, spec: StudySpec) -> None:
    """What only the built sampler and pruner and the resolved configs tell: their options, the
    space's corners, the ms_ssim image size and a baseline inside the space."""
    for label, build in (("[study.sampler_options]", lambda: spec.make_sampler(0)),
                         ("[study.pruner_options]", spec.make_pruner)):
        try:
            build()
        except (TypeError, ValueError) as exc:
            raise _err(src, label, str(exc)) from None
    _check_resolvable(src, spec)
    cfg = resolve(spec.base)
    if ("ms_ssim" in spec.metrics and cfg.data.val_resize == "squash"
            and cfg.training.image_size <= MS_SSIM_MIN_SIDE):
        raise _err(src, "[study] metrics", f"ms_ssim is only computed for validation images larger "
                                           f"than {MS_SSIM_MIN_SIDE} px; training.image_size is "
                                           f"{cfg.training.image_size}")
    if spec.baseline:
        for key, value in spec.baseline_params().items():
            if not spec.space[key].contains(value):
                raise _err(src, f'[space."{key}"]', f"baseline = true, but the base config's value "
                                                    f"{value!r} lies outside the searched range")


def load_spec(name: str | Path, preset: str | None = None,
              overrides: dict[str, Any] | None = None) -> StudySpec:
    """Read and fully validate ``studies/<name>.toml`` (or a path).

    ``preset`` replaces the file's preset; ``overrides`` (flat, e.g. ``--set``/``--data``) are
    applied on top of ``[fixed]`` and must not touch a searched key.
    """
    path = find_toml("studies", str(name))
    src = str(path)
    study, fixed_raw, space_raw = _load_tables(path, (path.resolve(),))
    fixed = _coerce_fixed(src, fixed_raw)
    space = {key: _param(src, key, raw) for key, raw in space_raw.items()}
    _check_searched_keys(src, fixed, space, overrides or {})
    with _in_file(src):
        study.validate(path.stem, space)
    preset = preset or study.preset
    spec = StudySpec(
        name=study.name, path=path, preset=preset, metrics=tuple(study.metrics),
        directions=tuple(study.directions), n_trials=study.n_trials, timeout=study.timeout,
        sampler=study.sampler, pruner=study.pruner, seed=study.seed, baseline=study.baseline,
        description=study.description,
        sampler_options=_options(src, "[study.sampler_options]", study.sampler_options,
                                 SAMPLERS[study.sampler], study.sampler),
        pruner_options=_pruner_options(src, "[study.pruner_options]", study.pruner,
                                       study.pruner_options),
        fixed=fixed, space=space,
        base={**(load_preset(preset) if preset else {}), **fixed, **(overrides or {})})
    _check_built(src, spec)
    return spec
