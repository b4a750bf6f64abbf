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

import importlib.util
import inspect
import itertools
import math
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna

from remdinet.config import ConfigError, coerce, field_spec
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
_STUDY_KEYS = {"name", "description", "preset", "metric", "metrics", "direction", "directions",
               "n_trials", "timeout", "sampler", "pruner", "seed", "baseline", "include",
               "sampler_options", "pruner_options"}
_TABLES = {"study", "fixed", "space"}
_PARAM_KEYS = {"float": {"type", "low", "high", "log", "step"},
               "int": {"type", "low", "high", "log", "step"},
               "categorical": {"type", "choices"}}


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


def _number(src: str, where: str, value: Any, integer: bool) -> float | int:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _err(src, where, f"expected a number, got {value!r}")
    if integer and not float(value).is_integer():
        raise _err(src, where, f"expected an integer, got {value!r}")
    return int(value) if integer else float(value)


def _param(src: str, key: str, raw: Any) -> ParamSpec:
    where = f'[space."{key}"]'
    try:
        typ, _ = field_spec(key)
    except ConfigError as exc:
        raise _err(src, where, str(exc)) from None
    if not isinstance(raw, dict):
        raise _err(src, where, "must be a table with type = float | int | categorical")
    kind = raw.get("type")
    if kind not in _PARAM_KEYS:
        raise _err(src, where, f"type must be one of float, int, categorical; got {kind!r}")
    extra = set(raw) - _PARAM_KEYS[kind]
    if extra:
        raise _err(src, where, f"unknown option(s) {', '.join(sorted(extra))} for type {kind!r}; "
                               f"allowed: {', '.join(sorted(_PARAM_KEYS[kind]))}")
    field_type = getattr(typ, "__name__", str(typ))
    if field_type == "list":
        raise _err(src, where, "list-valued config keys cannot be searched")
    if kind == "categorical":
        choices = raw.get("choices")
        if not isinstance(choices, list) or not choices:
            raise _err(src, where, "categorical needs a non-empty list 'choices'")
        values = []
        for c in choices:
            try:
                values.append(coerce(key, c))
            except ConfigError as exc:
                raise _err(src, where, f"choice {c!r} does not fit the config field: {exc}"
                           ) from None
            int_for_float = isinstance(c, int) and not isinstance(c, bool) and field_type == "float"
            if type(c) is not type(values[-1]) and not int_for_float:
                raise _err(src, where, f"choice {c!r} is a {type(c).__name__}, the config field is "
                                       f"{field_type}")
        if len(set(map(repr, values))) != len(values):
            raise _err(src, where, f"duplicate choices {choices!r}")
        return ParamSpec(key, kind, choices=tuple(values))
    if field_type != kind:
        raise _err(src, where, f"type {kind!r} does not match the config field, which is "
                               f"{field_type} (use type = \"{field_type}\" or categorical)")
    for bound in ("low", "high"):
        if bound not in raw:
            raise _err(src, where, f"missing '{bound}'")
    integer = kind == "int"
    low = _number(src, f"{where} low", raw["low"], integer)
    high = _number(src, f"{where} high", raw["high"], integer)
    if low >= high:
        raise _err(src, where, f"low ({low}) must be less than high ({high})")
    log = raw.get("log", False)
    if not isinstance(log, bool):
        raise _err(src, where, f"log must be true or false, got {log!r}")
    if log and low <= 0:
        raise _err(src, where, f"log = true needs low > 0, got low = {low}")
    step = raw.get("step")
    if step is not None:
        step = _number(src, f"{where} step", step, integer)
        if step <= 0:
            raise _err(src, where, f"step must be > 0, got {step}")
        if log:
            raise _err(src, where, "log and step cannot be combined (Optuna samples one or the "
                                   "other)")
    for name, v in (("low", low), ("high", high)):
        try:
            coerce(key, v)
        except ConfigError as exc:
            raise _err(src, where, f"{name} = {v}: {exc}") from None
    return ParamSpec(key, kind, low=low, high=high, log=log, step=step)


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


def _load_tables(path: Path, seen: tuple[Path, ...]) -> tuple[dict, dict[str, Any], dict[str, Any]]:
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
    bad = set(study) - _STUDY_KEYS
    if bad:
        raise _err(src, "[study]", f"unknown key(s) {', '.join(sorted(bad))}; "
                                   f"valid: {', '.join(sorted(_STUDY_KEYS))}")
    fixed = _flat_keys(src, doc.get("fixed", {}), "fixed", leaf=lambda v: False)
    space = _flat_keys(src, doc.get("space", {}), "space", leaf=lambda v: "type" in v)
    includes = study.get("include", [])
    if not isinstance(includes, list) or not all(isinstance(i, str) for i in includes):
        raise _err(src, "[study] include", "must be a list of study names")
    for name in includes:
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


def load_spec(name: str | Path, preset: str | None = None,
              overrides: dict[str, Any] | None = None) -> StudySpec:
    """Read and fully validate ``studies/<name>.toml`` (or a path).

    ``preset`` replaces the file's preset; ``overrides`` (flat, e.g. ``--set``/``--data``) are
    applied on top of ``[fixed]`` and must not touch a searched key.
    """
    path = find_toml("studies", str(name))
    src = str(path)
    study, fixed_raw, space_raw = _load_tables(path, (path.resolve(),))

    fixed: dict[str, Any] = {}
    for key, value in fixed_raw.items():
        try:
            fixed[key] = coerce(key, value)
        except ConfigError as exc:
            raise _err(src, f'[fixed] "{key}"', str(exc)) from None
    space = {key: _param(src, key, raw) for key, raw in space_raw.items()}
    if not space:
        raise _err(src, "[space]", "the search space is empty")
    clash = sorted(set(fixed) & set(space))
    if clash:
        raise _err(src, f'[fixed] "{clash[0]}"', "is also searched in [space]")
    clash = sorted(set(overrides or {}) & set(space))
    if clash:
        raise _err(src, f'"{clash[0]}" (--set or --config)', "is searched in [space]; it cannot "
                                                             "be fixed from the CLI")

    if "metric" in study and "metrics" in study:
        raise _err(src, "[study]", "give either metric or metrics, not both")
    metrics = study.get("metrics", [study.get("metric", "psnr")])
    if isinstance(metrics, str) or not isinstance(metrics, list) or not metrics:
        raise _err(src, "[study] metrics", "must be a non-empty list")
    for m in metrics:
        if m not in METRICS:
            raise _err(src, "[study] metric", f"unknown metric {m!r}; valid: {', '.join(METRICS)}")
    if len(set(metrics)) != len(metrics):
        raise _err(src, "[study] metrics", f"duplicate metrics {metrics}")
    if "direction" in study and "directions" in study:
        raise _err(src, "[study]", "give either direction or directions, not both")
    directions = study.get("directions", [study.get("direction", "maximize")] * len(metrics))
    if not isinstance(directions, list) or len(directions) != len(metrics):
        raise _err(src, "[study] directions", f"needs one direction per metric ({len(metrics)})")
    for d in directions:
        if d not in DIRECTIONS:
            raise _err(src, "[study] direction", f"{d!r} is not one of {', '.join(DIRECTIONS)}")
    multi = len(metrics) > 1

    sampler = study.get("sampler", "tpe")
    if sampler not in SAMPLERS:
        raise _err(src, "[study] sampler", f"unknown sampler {sampler!r}; valid: "
                                           f"{', '.join(SAMPLERS)}")
    if sampler == "cmaes":
        if importlib.util.find_spec("cmaes") is None:
            raise _err(src, "[study] sampler", "'cmaes' needs the cmaes package "
                                               "(pip install cmaes)")
        if multi:
            raise _err(src, "[study] sampler", "'cmaes' is single-objective only")
    if sampler == "grid":
        for key, p in space.items():
            if p.kind == "float" and p.step is None:
                raise _err(src, f'[space."{key}"]', "the grid sampler needs a step for float "
                                                    "parameters")
        if study.get("sampler_options"):
            raise _err(src, "[study.sampler_options]", "the grid sampler takes no options: "
                                                       "its points run in order, each once")
    pruner = study.get("pruner", "none" if multi else "median")
    if pruner not in PRUNERS:
        raise _err(src, "[study] pruner", f"unknown pruner {pruner!r}; valid: {', '.join(PRUNERS)}")
    if multi and pruner != "none":
        raise _err(src, "[study] pruner", "Optuna cannot prune multi-objective studies; "
                                          "set pruner = \"none\"")
    sampler_options = _options(src, "[study.sampler_options]", study.get("sampler_options"),
                               SAMPLERS[sampler], sampler)
    pruner_options = _pruner_options(src, "[study.pruner_options]", pruner,
                                     study.get("pruner_options"))

    n_trials = study.get("n_trials")
    if n_trials is not None and (isinstance(n_trials, bool) or not isinstance(n_trials, int)
                                 or n_trials < 1):
        raise _err(src, "[study] n_trials", f"must be a positive integer, got {n_trials!r}")
    timeout = study.get("timeout")
    if timeout is not None:
        timeout = _number(src, "[study] timeout", timeout, integer=False)
        if timeout <= 0:
            raise _err(src, "[study] timeout", f"must be > 0 seconds, got {timeout}")
    seed = study.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise _err(src, "[study] seed", f"must be a non-negative integer, got {seed!r}")
    baseline = study.get("baseline", False)
    if not isinstance(baseline, bool):
        raise _err(src, "[study] baseline", f"must be true or false, got {baseline!r}")
    name_value = study.get("name", path.stem)
    problem = name_problem(name_value)  # it names the study's folders and MLflow experiment
    if problem is not None:
        raise _err(src, "[study] name" if "name" in study else "[study] name (the file name)",
                   problem)
    preset = preset or study.get("preset")
    if preset is not None and not isinstance(preset, str):
        raise _err(src, "[study] preset", f"must be a preset name, got {preset!r}")

    base = {**(load_preset(preset) if preset else {}), **fixed, **(overrides or {})}
    spec = StudySpec(name=name_value, path=path, preset=preset, metrics=tuple(metrics),
                     directions=tuple(directions), n_trials=n_trials, timeout=timeout,
                     sampler=sampler, pruner=pruner, seed=seed, baseline=baseline,
                     description=str(study.get("description", "")),
                     sampler_options=sampler_options, pruner_options=pruner_options,
                     fixed=fixed, space=space, base=base)
    for label, build in (("[study.sampler_options]", lambda: spec.make_sampler(0)),
                         ("[study.pruner_options]", spec.make_pruner)):
        try:
            build()
        except (TypeError, ValueError) as exc:
            raise _err(src, label, str(exc)) from None
    _check_resolvable(src, spec)
    cfg = resolve(base)
    if ("ms_ssim" in spec.metrics and cfg.data.val_resize == "squash"
            and cfg.training.image_size <= MS_SSIM_MIN_SIDE):
        raise _err(src, "[study] metrics", f"ms_ssim is only computed for validation images larger "
                                           f"than {MS_SSIM_MIN_SIDE} px; training.image_size is "
                                           f"{cfg.training.image_size}")
    if baseline:
        for key, value in spec.baseline_params().items():
            if not space[key].contains(value):
                raise _err(src, f'[space."{key}"]', f"baseline = true, but the base config's value "
                                                    f"{value!r} lies outside the searched range")
    return spec
