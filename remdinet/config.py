"""Typed run configuration.

A ``Config`` is a tree of dataclass sections. It has three equivalent forms:

* the dataclasses themselves (what the library reads),
* a TOML document with one table per section,
* a flat ``{"section.key": value}`` dict (what MLflow params and Optuna search spaces address).

Defaults are the post-fix (AFTER) values of the reference. The settings a fix changed take both
their values from :mod:`remdinet.fixes` (the after value is the default here); the pre-fix ones are
applied by :func:`remdinet.resolve.resolve` *before* the user's explicit overrides, so an explicit
value always wins and the resolved config is what gets logged.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import math
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, get_args, get_origin, get_type_hints

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised only on Python 3.10
    import tomli as tomllib

from .errors import ConfigError, did_you_mean
from .fixes import POST_FIX, PROFILES, post_fix_value, post_fix_values


def setting(default: Any, lo: float | None = None, hi: float | None = None,
            choices: tuple | None = None, doc: str = "", noun: str = "") -> Any:
    """A declared dataclass field: default (``dataclasses.MISSING``: required), inclusive range,
    allowed values and meaning, checked by :func:`coerce_value`. ``noun`` names what a value is in
    the error for one outside ``choices`` (``unknown sampler 'x'; valid: ...``)."""
    meta = {"lo": lo, "hi": hi, "choices": choices, "doc": doc, "noun": noun}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


_f = setting  # the short name of the declarations below


@dataclass
class ModelConfig:
    num_iterations: int = _f(8, 1, 32, doc="curve iterations n; the curve net outputs 3n channels")
    use_snr_awareness: bool = _f(True, doc="build the SNR-aware distraction module")
    use_semantic_guidance: bool = _f(True, doc="build backbone + semantic head + transformer decoder")
    use_learnable_snr: bool = _f(True, doc="learned SNR map instead of the handcrafted one")
    snr_tiny_mode: bool = _f(False, doc="SNR denoiser is a learnable 5x5 depthwise box filter")
    disable_color_affine: bool = _f(False, doc="skip GlobalColourAffine")
    disable_color_enhancer: bool = _f(False, doc="skip EnhancedGlobalColorCorrection")
    backbone_weights: str = _f("", doc="local MobileNetV3-Large state_dict (torchvision keys accepted); "
                                       "empty = random init")
    backbone_width: float = _f(1.0, 0.1, 2.0, doc="MobileNetV3 width multiplier (1.0 = reference)")
    snr_hidden: int = _f(64, 4, 512, doc="SNR module encoder width")
    decoder_dim: int = _f(128, 8, 1024, doc="transformer decoder width")
    decoder_blocks: int = _f(3, 0, 16, doc="windowed transformer blocks in the decoder")
    decoder_heads: int = _f(4, 1, 32)
    window_size: int = _f(8, 1, 64)
    semantic_hidden: int = _f(256, 8, 2048, doc="semantic head hidden width")
    curve_hidden: int = _f(32, 4, 512)
    mask_hidden: int = _f(32, 4, 512)
    before_curve_mode: str = _f("actual", choices=("actual", "intended"),
                                doc="pre-fix curve branch: 'actual' = identity (the swallowed shape "
                                    "error), 'intended' = the 4-channel additive formula")
    channels_last: bool = _f(True, doc="run convolutions in channels_last memory format (faster on "
                                       "CPU at every size measured, benchmarks/README.md)")


def _weight(name: str) -> Any:
    # StageWeights() is stage 2: its defaults are stage 2's post-fix weights
    return _f(post_fix_value(f"stage2.{name}"), 0.0, 100.0)


@dataclass
class StageWeights:
    w_reconstruction: float = _weight("w_reconstruction")
    w_color_consistency: float = _weight("w_color_consistency")
    w_color_diversity: float = _weight("w_color_diversity")
    w_exposure: float = _weight("w_exposure")
    w_edge: float = _weight("w_edge")
    w_ssim: float = _weight("w_ssim")
    w_perceptual: float = _weight("w_perceptual")
    w_mask_mean: float = _weight("w_mask_mean")


def _stage1() -> StageWeights:
    return StageWeights(**post_fix_values("stage1"))


def _stage3() -> StageWeights:
    return StageWeights(**post_fix_values("stage3"))


STAGE_WEIGHT_KEYS = tuple(f.name for f in fields(StageWeights))


@dataclass
class LossConfig:
    w_affine_decay: float = _f(1e-4, 0.0, 100.0, doc="weight of mean(W^2) of the colour affine "
                                                     "(dead in the reference; see corrections)")
    curve_penalty_weight: float = _f(0.3, 0.0, 100.0)
    curve_penalty_threshold: float = _f(0.2, 0.0, 1.0)
    exposure_level: float = _f(0.45, 0.0, 1.0)
    total_clamp: float = _f(5.0, 0.0, 1e9, doc="loss clamps its total to [0, this]")
    trainer_clamp: float = _f(3.0, 0.0, 1e9, doc="trainer clamps the loss to [0, this]")
    stage1_l1: float = _f(0.7, 0.0, 100.0, doc="stage-1 reconstruction: l1 weight")
    stage1_mse: float = _f(0.3, 0.0, 100.0, doc="stage-1 reconstruction: mse weight")
    unsupervised_colour_factor: float = _f(0.2, 0.0, 1.0)
    perceptual_weights: str = _f("", doc="local VGG19 state_dict for the perceptual term; empty = "
                                         "term off (stated in the log)")


@dataclass
class RampConfig:
    keys: list = _f(post_fix_value("ramp.keys"),
                    doc="stage-2 weights ramped by a cosine warm-up")
    warmup_epochs: int = _f(10, 1, 10_000, doc="cosine warm-up length (the trainer's 10)")


@dataclass
class ColorThresholds:
    min_saturation: float = _f(post_fix_value("color_thresholds.min_saturation"), 0.0, 1.0)
    critical_saturation: float = _f(post_fix_value("color_thresholds.critical_saturation"), 0.0, 1.0)
    target_saturation: float = _f(post_fix_value("color_thresholds.target_saturation"), 0.0, 1.0)
    saturation_penalty_factor: float = _f(
        post_fix_value("color_thresholds.saturation_penalty_factor"), 0.0, 100.0)


@dataclass
class ClampConfig:
    enhancer_weight_min: float = _f(post_fix_value("clamps.enhancer_weight_min"), -10.0, 10.0)
    enhancer_weight_max: float = _f(post_fix_value("clamps.enhancer_weight_max"), -10.0, 10.0)
    enhancer_identity_delta: float = _f(0.05, 0.0, 10.0,
                                        doc="half-width of the identity-relative enhancer clamp "
                                            "(correction enhancer_identity_clamp)")
    enhancer_bias_min: float = _f(post_fix_value("clamps.enhancer_bias_min"), -1.0, 1.0)
    enhancer_bias_max: float = _f(post_fix_value("clamps.enhancer_bias_max"), -1.0, 1.0)
    enhancer_vibrance_init: float = _f(post_fix_value("clamps.enhancer_vibrance_init"), 0.0, 10.0)
    enhancer_vibrance_min: float = _f(post_fix_value("clamps.enhancer_vibrance_min"), 0.0, 10.0)
    enhancer_vibrance_max: float = _f(post_fix_value("clamps.enhancer_vibrance_max"), 0.0, 10.0)
    enhancer_gamma_min: float = _f(post_fix_value("clamps.enhancer_gamma_min"), 0.01, 10.0)
    enhancer_gamma_max: float = _f(post_fix_value("clamps.enhancer_gamma_max"), 0.01, 10.0)
    affine_identity_clamp: float = _f(0.15, 0.0, 10.0, doc="identity-relative half-width (post-fix)")
    affine_flat_min: float = _f(0.95, -10.0, 10.0, doc="flat element clamp (pre-fix)")
    affine_flat_max: float = _f(1.05, -10.0, 10.0)
    affine_bias_min: float = _f(-0.02, -1.0, 1.0)
    affine_bias_max: float = _f(0.02, -1.0, 1.0)


@dataclass
class EarlyStoppingConfig:
    enabled: bool = _f(True)
    stage1_patience: int = _f(30, 1, 100_000, doc="in validation events, not epochs")
    stage1_min_delta: float = _f(0.10, 0.0, 100.0)
    stage2_patience: int = _f(18, 1, 100_000)
    stage2_min_delta: float = _f(0.15, 0.0, 100.0)
    stage3_patience: int = _f(15, 1, 100_000)
    stage3_min_delta: float = _f(0.10, 0.0, 100.0)


@dataclass
class OptimConfig:
    lr_scale: float = _f(1.0, 1e-6, 1e6, doc="multiplies every group LR and the mask-unfreeze LR; "
                                              "short presets raise it so a few hundred steps "
                                              "train, keeping the pre/post-fix LR ratios intact")
    lr_curve: float = _f(1e-4, 0.0, 1.0)
    lr_mask: float = _f(1e-4, 0.0, 1.0)
    lr_other: float = _f(post_fix_value("optim.lr_other"), 0.0, 1.0)
    weight_decay: float = _f(3e-4, 0.0, 1.0)
    grad_clip: float = _f(post_fix_value("optim.grad_clip"), 0.0, 1e6, doc="gradient-norm clip (max norm); 0 = no clipping")
    mask_unfreeze_epoch: int = _f(15, 0, 100_000, doc="epoch within stage 2 that unfreezes the mask")
    mask_unfreeze_lr: float = _f(2e-5, 0.0, 1.0)
    mask_legacy_lr_factor: float = _f(0.1, 0.0, 1.0, doc="pre-fix per-batch LR multiplier")
    eta_min: float = _f(1e-6, 0.0, 1.0)
    plateau_factor: float = _f(0.5, 0.0, 1.0)
    plateau_patience: int = _f(8, 0, 100_000)


@dataclass
class TrainingConfig:
    num_epochs: int = _f(200, 1, 1_000_000)
    stage1_frac: float = _f(0.25, 0.0, 1.0)
    stage3_frac: float = _f(0.20, 0.0, 1.0)
    stage2_mix_epochs: int = _f(15, 0, 100_000)
    stage3_mix_epochs: int = _f(5, 0, 100_000)
    batch_size: int = _f(8, 1, 100_000)
    image_size: int = _f(512, 16, 100_000, doc="training crop side (>= 16: the SSIM window is 11)")
    accum_batches: int = _f(1, 1, 100_000)
    seed: int = _f(42, 0, 2**31 - 1)
    val_every: int = _f(5, 1, 100_000, doc="validate every n epochs after the dense phase")
    val_dense_epochs: int = _f(15, 0, 100_000, doc="validate every epoch before this epoch")
    save_best_stage: int = _f(3, 1, 3)
    monitor_stage3: str = _f("composite", choices=("psnr", "ssim", "composite"))
    s3_psnr_weight: float = _f(0.7, 0.0, 1.0)
    s3_ssim_weight: float = _f(0.3, 0.0, 1.0)
    max_train_batches: int = _f(0, 0, 10_000_000, doc="cap batches per epoch (0 = all)")
    max_val_batches: int = _f(0, 0, 10_000_000, doc="cap validation batches (0 = all)")
    device: str = _f("auto", doc="auto | cpu | cuda | cuda:N")
    precision: str = _f("fp32", choices=("fp32", "bf16", "fp16", "auto"),
                        doc="autocast dtype; auto = bf16 on CUDA, fp32 on CPU")
    compile: bool = _f(False, doc="torch.compile the model")
    num_workers: int = _f(-1, -1, 256, doc="loader worker processes; -1 = auto: 0 on CPU, on CUDA "
                          "up to 4 (at most half the CPUs); see remdinet.data.feeding")
    output_dir: str = _f("outputs", doc="checkpoints go to <output_dir>/<run name>/")
    checkpoint_every: int = _f(20, 0, 100_000, doc="periodic checkpoint every n epochs (0 = off)")


@dataclass
class DataConfig:
    root: str = _f("", doc="dataset folder; empty = the embedded synthetic set")
    layout: str = _f("auto", choices=("auto", "lol_v1", "lol_v2_real", "lol_v2_synthetic",
                                      "remdinet"))
    pairing: str = _f("flexible", choices=("strict", "flexible", "none"))
    val_split: float = _f(0.2, 0.0, 0.9, doc="fraction held out when no val folder exists")
    split_seed: int = _f(42, 0, 2**31 - 1)
    augment: bool = _f(True)
    skip_bad: bool = _f(False, doc="skip unreadable/mismatched files (counted, logged) "
                                   "instead of failing")
    cache_decoded: bool = _f(True, doc="decode each file once and keep it in memory")
    val_resize: str = _f("squash", choices=("squash", "none"),
                         doc="validation geometry: squash to image_size (reference) or native")


@dataclass
class SyntheticConfig:
    """Degradation of the embedded default set (see remdinet.data.synthetic)."""
    size: int = _f(128, 16, 4096, doc="side of the square crops written to disk")
    crops_per_image: int = _f(3, 1, 100)
    gamma: float = _f(2.2, 1.0, 4.0)
    exposure_min: float = _f(0.05, 1e-4, 1.0)
    exposure_max: float = _f(0.25, 1e-4, 1.0)
    full_well: float = _f(1000.0, 1.0, 1e7, doc="photo-electrons at full scale (shot noise)")
    read_noise: float = _f(0.004, 0.0, 1.0, doc="Gaussian read noise std, linear units")
    val_fraction: float = _f(0.25, 0.0, 0.9)
    seed: int = _f(1234, 0, 2**31 - 1)
    cache_dir: str = _f("", doc="where the set is written; empty = ~/.cache/remdinet")


@dataclass
class FixesConfig:
    """Which fixes and corrections are active; :class:`remdinet.fixes.FixSet` is derived from it."""
    profile: str = _f(POST_FIX, choices=PROFILES)
    disable: list = _f([], doc="fix or sub-switch names switched off on top of the profile")
    enable: list = _f([], doc="fix or sub-switch names switched on on top of the profile")
    corrections: list = _f([], doc="latent-bug corrections switched on on top of the profile")


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    stage1: StageWeights = field(default_factory=_stage1)
    stage2: StageWeights = field(default_factory=StageWeights)
    stage3: StageWeights = field(default_factory=_stage3)
    loss: LossConfig = field(default_factory=LossConfig)
    ramp: RampConfig = field(default_factory=RampConfig)
    color_thresholds: ColorThresholds = field(default_factory=ColorThresholds)
    clamps: ClampConfig = field(default_factory=ClampConfig)
    early_stopping: EarlyStoppingConfig = field(default_factory=EarlyStoppingConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    data: DataConfig = field(default_factory=DataConfig)
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    fixes: FixesConfig = field(default_factory=FixesConfig)

    # -- flat form ---------------------------------------------------------------------------
    def to_flat(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for sec in fields(self):
            section = getattr(self, sec.name)
            for f in fields(section):
                value = getattr(section, f.name)
                out[f"{sec.name}.{f.name}"] = list(value) if isinstance(value, list) else value
        return out

    @classmethod
    def from_flat(cls, flat: dict[str, Any]) -> "Config":
        return apply_overrides(cls(), flat)

    def stage_weights(self, stage: int) -> StageWeights:
        if stage not in (1, 2, 3):
            raise ConfigError(f"stage must be 1, 2 or 3, got {stage!r}")
        return getattr(self, f"stage{stage}")

    def copy(self) -> "Config":
        return Config.from_flat(self.to_flat())

    # -- TOML form ---------------------------------------------------------------------------
    def to_toml(self) -> str:
        return dump_toml(self.to_flat())

    @classmethod
    def from_toml(cls, text: str) -> "Config":
        return cls.from_flat(toml_to_flat(text))


# ------------------------------------------------------------------------------------------
# key lookup, type coercion and validation
# ------------------------------------------------------------------------------------------

# cached: resolving evaluates every key's type hints several times, which dominated resolve()
@functools.lru_cache(maxsize=None)
def _section_types() -> dict[str, type]:
    hints = get_type_hints(Config)
    return {f.name: hints[f.name] for f in fields(Config)}


def _key_hint(key: str) -> str:
    """The suggestion for an unknown flat key: its name in the one section that has it (a key
    given without or in the wrong section), else the closest key."""
    keys = all_keys()
    same_name = [k for k in keys if k.split(".")[1] == key.rsplit(".", 1)[-1]]
    if len(same_name) == 1:
        return f"; did you mean {same_name[0]!r}?"
    return did_you_mean(key, keys)


def field_spec(key: str) -> tuple[type, dataclasses.Field]:
    """Return (python type, dataclass field) of a flat key, or raise naming the key."""
    if not isinstance(key, str) or key.count(".") != 1:
        hint = _key_hint(key) if isinstance(key, str) else ""
        raise ConfigError(f"config key {key!r} must look like 'section.key'{hint}")
    sec, name = key.split(".")
    sections = _section_types()
    if sec not in sections:
        raise ConfigError(f"unknown config section {sec!r} in key {key!r}"
                          f"{_key_hint(key) or did_you_mean(sec, sections) or ';'} "
                          f"sections: {', '.join(sections)}")
    cls = sections[sec]
    by_name = {f.name: f for f in fields(cls)}
    if name not in by_name:
        raise ConfigError(f"unknown config key {key!r}{_key_hint(key) or ';'} "
                          f"keys in [{sec}]: {', '.join(by_name)}")
    return _type_hints(cls)[name], by_name[name]


@functools.lru_cache(maxsize=None)
def _type_hints(cls: type) -> dict[str, Any]:
    return get_type_hints(cls)


def all_keys() -> list[str]:
    return list(Config().to_flat())


@dataclass(frozen=True)
class KeySpec:
    """What a user may set for one flat key: ``allowed`` is ``"[lo, hi]"``, ``"a | b"`` or ``""``;
    ``default`` is the post-fix default (a switched-off fix changes some, see ``resolve``)."""
    key: str
    type: str
    allowed: str
    default: Any
    doc: str


def key_specs(section: str | None = None) -> list[KeySpec]:
    """Every flat key (of ``section`` only, when given) with its type, range, default and doc."""
    sections = _section_types()
    if section is not None and section not in sections:
        raise ConfigError(f"unknown config section {section!r}"
                          f"{did_you_mean(section, sections) or ';'} "
                          f"sections: {', '.join(sections)}")
    out = []
    for key, default in Config().to_flat().items():
        if section is not None and not key.startswith(f"{section}."):
            continue
        typ, f = field_spec(key)
        meta = f.metadata
        if meta.get("choices"):
            allowed = " | ".join(map(str, meta["choices"]))
        elif meta.get("lo") is not None or meta.get("hi") is not None:
            allowed = f"[{meta.get('lo')}, {meta.get('hi')}]"
        else:
            allowed = ""
        out.append(KeySpec(key, (get_origin(typ) or typ).__name__, allowed, default,
                           meta.get("doc", "")))
    return out


def coerce(key: str, value: Any) -> Any:
    """Convert ``value`` (possibly a string from a CLI or MLflow) to the type of ``key``; validate."""
    typ, f = field_spec(key)
    return coerce_value(key, typ, f, value)


_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


def _to_bool(value: Any, typ: Any) -> bool:
    if isinstance(value, str):
        low = value.strip().lower()
        if low not in _TRUE + _FALSE:
            raise ValueError(value)
        return low in _TRUE
    if not isinstance(value, (bool, int)) or value not in (0, 1, True, False):
        raise ValueError(value)
    return bool(value)


def _to_int(value: Any, typ: Any) -> int:
    if isinstance(value, bool) or isinstance(value, float) and not value.is_integer():
        raise ValueError(value)
    return int(value)


def _to_float(value: Any, typ: Any) -> float:
    if isinstance(value, bool):
        raise ValueError(value)
    return float(value)


def _exactly(kind: type) -> Callable[[Any, Any], Any]:
    """A converter taking only values already of ``kind``: a string or a table is never made up
    from another type."""
    def convert(value: Any, typ: Any) -> Any:
        if not isinstance(value, kind):
            raise ValueError(value)
        return value
    return convert


def _to_list(value: Any, typ: Any) -> list:
    # a CLI or MLflow string is either JSON ("[...]") or comma-separated items
    if isinstance(value, str):
        text = value.strip()
        value = (json.loads(text) if text.startswith("[")
                 else [v.strip() for v in text.split(",") if v.strip()])
    item = (get_args(typ) or (str,))[0]
    if not isinstance(value, (list, tuple)) or not all(
            item is Any or isinstance(v, item) for v in value):
        raise ValueError(value)
    return list(value)


_CONVERTERS = {bool: _to_bool, int: _to_int, float: _to_float, str: _exactly(str),
               list: _to_list, dict: _exactly(dict)}


def _check_declared(name: str, f: dataclasses.Field, value: Any, is_list: bool) -> None:
    """``value`` against the field's declared range and choices; errors name ``name``."""
    lo, hi, choices = f.metadata.get("lo"), f.metadata.get("hi"), f.metadata.get("choices")
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{name}: value must be finite, got {value!r}")
    if lo is not None and value < lo or hi is not None and value > hi:
        allowed = (f"must be >= {lo}" if hi is None else f"must be <= {hi}" if lo is None
                   else f"is outside the allowed range [{lo}, {hi}]")
        raise ConfigError(f"{name}: {value!r} {allowed}")
    if choices is None:
        return
    for v in value if is_list else [value]:
        if v not in choices:
            valid = ", ".join(map(str, choices))
            noun = f.metadata.get("noun")
            raise ConfigError(f"{name}: unknown {noun} {v!r}; valid: {valid}" if noun else
                              f"{name}: {v!r} is not one of {valid}")


def coerce_value(name: str, typ: Any, f: dataclasses.Field, value: Any) -> Any:
    """``value`` converted to ``typ`` and checked against the field's :func:`setting`; errors name
    ``name``. ``X | None`` takes an X; a ``list`` holds strings (``list[T]``: Ts), each one of
    ``choices`` when declared; a ``dict`` (a TOML table) is kept as it is."""
    if type(None) in get_args(typ):
        typ = next(a for a in get_args(typ) if a is not type(None))
    origin = get_origin(typ) or typ
    convert = _CONVERTERS.get(origin)
    if convert is not None:
        try:
            value = convert(value, typ)
        except (ValueError, TypeError, json.JSONDecodeError):
            raise ConfigError(f"{name}: expected {origin.__name__}, got {value!r}") from None
    _check_declared(name, f, value, origin is list)
    return value


def read_table(cls: type, table: dict[str, Any], where: str, noun: str = "key") -> Any:
    """An instance of the dataclass ``cls`` (fields declared with :func:`setting`) from a TOML
    table: unknown and missing keys are refused, each value is checked against its declaration,
    and every message starts with ``where`` (the table, e.g. ``[study]``)."""
    by_name = {f.name: f for f in fields(cls)}
    unknown = sorted(set(table) - set(by_name))
    if unknown:
        raise ConfigError(f"{where}: unknown {noun}(s) {', '.join(unknown)}; "
                          f"valid: {', '.join(sorted(by_name))}")
    for n, f in by_name.items():
        if n not in table and f.default is dataclasses.MISSING is f.default_factory:
            raise ConfigError(f"{where}: missing {n!r}")
    hints = _type_hints(cls)
    return cls(**{n: coerce_value(f"{where} {n}", hints[n], by_name[n], v)
                  for n, v in table.items()})


_ORDERED_PAIRS = [
    ("clamps.enhancer_weight_min", "clamps.enhancer_weight_max"),
    ("clamps.enhancer_bias_min", "clamps.enhancer_bias_max"),
    ("clamps.enhancer_vibrance_min", "clamps.enhancer_vibrance_max"),
    ("clamps.enhancer_gamma_min", "clamps.enhancer_gamma_max"),
    ("clamps.affine_flat_min", "clamps.affine_flat_max"),
    ("clamps.affine_bias_min", "clamps.affine_bias_max"),
    ("synthetic.exposure_min", "synthetic.exposure_max"),
]


def validate(cfg: Config) -> Config:
    """Cross-field checks that single-key coercion cannot do."""
    flat = cfg.to_flat()
    for key, value in flat.items():
        coerce(key, value)
    for lo_key, hi_key in _ORDERED_PAIRS:
        if flat[lo_key] > flat[hi_key]:
            raise ConfigError(f"{lo_key} ({flat[lo_key]}) must not exceed {hi_key} ({flat[hi_key]})")
    if flat["training.stage1_frac"] + flat["training.stage3_frac"] >= 1.0:
        raise ConfigError("training.stage1_frac + training.stage3_frac must be < 1 "
                          "(stage 2 needs at least one epoch)")
    unknown = set(flat["ramp.keys"]) - set(STAGE_WEIGHT_KEYS)
    if unknown:
        raise ConfigError(f"ramp.keys: unknown weight names {sorted(unknown)}; "
                          f"valid: {', '.join(STAGE_WEIGHT_KEYS)}")
    if cfg.model.decoder_dim % cfg.model.decoder_heads:
        raise ConfigError("model.decoder_dim must be divisible by model.decoder_heads")
    return cfg


def apply_overrides(cfg: Config, overrides: dict[str, Any]) -> Config:
    """Return a copy of ``cfg`` with flat ``overrides`` applied and validated."""
    out = dataclasses.replace(cfg, **{f.name: dataclasses.replace(getattr(cfg, f.name))
                                      for f in fields(cfg)})
    for key, value in overrides.items():
        sec, name = key.split(".") if isinstance(key, str) and key.count(".") == 1 else (None, None)
        value = coerce(key, value)
        setattr(getattr(out, sec), name, value)
    return validate(out)


def parse_set_args(items: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Parse ``key=value`` strings (the CLI's ``--set``) into a flat override dict."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"an override must be key=value (a flat config key), got {item!r}")
        key, value = item.split("=", 1)
        key = key.strip()
        out[key] = coerce(key, value.strip())
    return out


# ------------------------------------------------------------------------------------------
# TOML
# ------------------------------------------------------------------------------------------

def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise ConfigError(f"cannot write {value!r} to TOML")


def dump_toml(flat: dict[str, Any]) -> str:
    """Write a flat ``section.key`` dict as TOML tables (sections in first-seen order)."""
    sections: dict[str, list[str]] = {}
    for key, value in flat.items():
        sec, name = key.split(".", 1)
        sections.setdefault(sec, []).append(f"{name} = {_toml_value(value)}")
    return "\n".join(f"[{sec}]\n" + "\n".join(lines) + "\n" for sec, lines in sections.items())


def toml_to_flat(text: str, source: str = "<toml>") -> dict[str, Any]:
    """Read TOML tables into a flat dict; nested tables or top-level values are rejected."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: invalid TOML: {exc}") from None
    flat: dict[str, Any] = {}
    for sec, table in doc.items():
        if not isinstance(table, dict):
            raise ConfigError(f"{source}: top-level key {sec!r} must be a [section] table")
        for name, value in table.items():
            if isinstance(value, dict):
                raise ConfigError(f"{source}: nested table {sec}.{name} is not a config key")
            flat[f"{sec}.{name}"] = value
    return flat


def read_toml_overrides(path: str | Path) -> dict[str, Any]:
    """Read a (partial) config TOML file as explicit overrides; every key is checked."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    flat = toml_to_flat(path.read_text(encoding="utf-8"), source=str(path))
    return {key: coerce(key, value) for key, value in flat.items()}


def save_toml(cfg: Config, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(cfg.to_toml(), encoding="utf-8")
    return path
