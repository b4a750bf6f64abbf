"""The five fixes of the reference (§8) and the latent-bug corrections (§8.1): one registry.

Every layer asks this module, never a copy of it:

* a *fix* (``mask_unfreeze``) is a group of *sub-switches* (``mask_unfreeze.grad_clip``); on = the
  post-fix (AFTER) behaviour, off = the pre-fix (BEFORE) behaviour *as it actually ran*, bugs included;
* a *correction* (``enhancer_identity_clamp``) repairs a bug that survived the fixes; off (the default)
  = the reference behaviour, on = repaired. The ``corrected`` profile turns every fix and correction on.

Sub-switches that changed a *setting* carry ``config_values`` (flat key -> (before, after)); the config
resolver applies the ``before`` value when the sub-switch is off, unless the user set the key
explicitly. Sub-switches that changed *behaviour* are read with :meth:`FixSet.on` by the model, the
losses and the trainer.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable

from .errors import ConfigError, did_you_mean

if TYPE_CHECKING:
    from .config import FixesConfig


# -- switch identifiers -----------------------------------------------------------------------
# Every layer passes these to FixSet.on / FixSet.corrects: a typo is an ImportError at load time,
# not a switch name that silently never matches.

# fixes (§8) and their sub-switches
COLOR_DIVERSITY_LOSS = "color_diversity_loss"
COLOR_DIVERSITY_LOSS_FORMULA = "color_diversity_loss.formula"

RAMP_KEYS = "ramp_keys"
RAMP_KEYS_RAMP_KEYS = "ramp_keys.ramp_keys"
RAMP_KEYS_STAGE_WEIGHTS = "ramp_keys.stage_weights"
RAMP_KEYS_COLOR_THRESHOLDS = "ramp_keys.color_thresholds"
RAMP_KEYS_TRAINING_DEFAULTS = "ramp_keys.training_defaults"
RAMP_KEYS_RAMP_DEFAULT_WARMUP = "ramp_keys.ramp_default_warmup"

MASK_UNFREEZE = "mask_unfreeze"
MASK_UNFREEZE_UNFREEZE = "mask_unfreeze.unfreeze"
MASK_UNFREEZE_GRAD_CLIP = "mask_unfreeze.grad_clip"
MASK_UNFREEZE_VAL_NAN_GUARD = "mask_unfreeze.val_nan_guard"
MASK_UNFREEZE_OTHER_LR = "mask_unfreeze.other_lr"
MASK_UNFREEZE_COLOUR_HEAD_INIT = "mask_unfreeze.colour_head_init"

DIFFERENTIABLE_MODEL = "differentiable_model"
DIFFERENTIABLE_MODEL_DECODER_SATURATION_CHECK = "differentiable_model.decoder_saturation_check"
DIFFERENTIABLE_MODEL_AFFINE_GRAYWORLD = "differentiable_model.affine_grayworld"
DIFFERENTIABLE_MODEL_AFFINE_CLAMP = "differentiable_model.affine_clamp"
DIFFERENTIABLE_MODEL_FINAL_SATURATION_BOOST = "differentiable_model.final_saturation_boost"
DIFFERENTIABLE_MODEL_CURVE_APPLICATION = "differentiable_model.curve_application"

COLOR_CLAMPS = "color_clamps"
COLOR_CLAMPS_ENHANCER_WEIGHT_CLAMP = "color_clamps.enhancer_weight_clamp"
COLOR_CLAMPS_ENHANCER_BIAS_CLAMP = "color_clamps.enhancer_bias_clamp"
COLOR_CLAMPS_ENHANCER_VIBRANCE = "color_clamps.enhancer_vibrance"
COLOR_CLAMPS_ENHANCER_GAMMA_CLAMP = "color_clamps.enhancer_gamma_clamp"

# latent-bug corrections (§8.1)
ENHANCER_IDENTITY_CLAMP = "enhancer_identity_clamp"
SINGLE_MASK_SQUARE = "single_mask_square"
PER_IMAGE_DECISIONS = "per_image_decisions"
PERCEPTUAL_LOSS = "perceptual_loss"
AFFINE_DECAY = "affine_decay"
STAGE1_WEIGHTS = "stage1_weights"
NO_LOSS_CLAMP = "no_loss_clamp"
SCHEDULER_EVERY_EPOCH = "scheduler_every_epoch"
RESET_BEST_PER_STAGE = "reset_best_per_stage"
FROZEN_BN_EVAL = "frozen_bn_eval"
UNSATURATED_GUIDANCE = "unsaturated_guidance"
CIRCULAR_HUE = "circular_hue"

# fix profiles (``fixes.profile``)
POST_FIX = "post_fix"
PRE_FIX = "pre_fix"
CORRECTED = "corrected"


@dataclass(frozen=True)
class SubSwitch:
    name: str  # "fix.sub"
    description: str
    before: str
    after: str
    config_values: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    inert: bool = False  # documented in the reference as having no effect on training


@dataclass(frozen=True)
class Fix:
    name: str
    description: str
    subs: tuple[SubSwitch, ...]


@dataclass(frozen=True)
class Correction:
    name: str
    description: str
    reference: str  # what the original (post-fix) code does
    corrected: str
    spec: str  # section of the reference


def _stage_values(stage: int, before: tuple, after: tuple) -> dict[str, tuple[Any, Any]]:
    keys = ("w_reconstruction", "w_color_consistency", "w_color_diversity", "w_exposure", "w_edge",
            "w_ssim", "w_perceptual", "w_mask_mean")
    return {f"stage{stage}.{k}": (b, a) for k, b, a in zip(keys, before, after)}


_BEFORE_RAMP = ["w_reconstruction", "w_color_consistency", "w_color_diversity", "w_exposure",
                "w_edge", "w_ssim"]
_AFTER_RAMP = ["w_color_consistency", "w_color_diversity", "w_exposure", "w_edge"]

FIXES: dict[str, Fix] = {f.name: f for f in (
    Fix(COLOR_DIVERSITY_LOSS, "differentiable colour-diversity loss (Myloss.py)", (
        SubSwitch(COLOR_DIVERSITY_LOSS_FORMULA,
                  "colour-diversity loss formula",
                  "piecewise ((tau-s)/tau)^2 / constant 0.5 / constant 0 on batch scalars; the "
                  "constant branches carry no gradient",
                  "0.5*exp(-15*div) + 0.5*exp(-10*mean saturation)"),
    )),
    Fix(RAMP_KEYS, "RAMP_KEYS, stage weights and thresholds (loss_weights.py)", (
        SubSwitch(RAMP_KEYS_RAMP_KEYS, "which stage-2 weights the cosine warm-up ramps",
                  "also w_reconstruction and w_ssim", "colour, diversity, exposure, edge only",
                  {"ramp.keys": (_BEFORE_RAMP, _AFTER_RAMP)}),
        SubSwitch(RAMP_KEYS_STAGE_WEIGHTS, "per-stage loss weights (stage 1 is inert)",
                  "BEFORE columns of §4.2", "AFTER columns of §4.2",
                  {**_stage_values(1, (1.00, 0.30, 0.50, 0.00, 0.00, 0.50, 0.00, 0.00),
                                   (1.20, 0.20, 0.30, 0.00, 0.00, 0.60, 0.00, 0.00)),
                   **_stage_values(2, (1.35, 0.05, 0.05, 0.07, 0.09, 0.25, 0.00, 0.05),
                                   (1.35, 0.07, 0.07, 0.07, 0.12, 0.45, 0.00, 0.03)),
                   **_stage_values(3, (0.95, 0.15, 0.20, 0.08, 0.18, 0.28, 0.04, 0.10),
                                   (0.90, 0.10, 0.12, 0.04, 0.20, 0.45, 0.06, 0.08))}),
        SubSwitch(RAMP_KEYS_COLOR_THRESHOLDS, "COLOR_THRESHOLDS",
                  "0.18 / 0.05 / 0.35 / 1.5", "0.10 / 0.04 / 0.30 / 1.0",
                  {"color_thresholds.min_saturation": (0.18, 0.10),
                   "color_thresholds.critical_saturation": (0.05, 0.04),
                   "color_thresholds.target_saturation": (0.35, 0.30),
                   "color_thresholds.saturation_penalty_factor": (1.5, 1.0)}),
        SubSwitch(RAMP_KEYS_TRAINING_DEFAULTS, "TRAINING_DEFAULTS batch/size",
                  "batch 4, size 320", "batch 8, size 512 (the CLI used 8/512 in both)", inert=True),
        SubSwitch(RAMP_KEYS_RAMP_DEFAULT_WARMUP, "ramp_colour default warm-up",
                  "15", "20 (the trainer always passes 10)", inert=True),
    )),
    Fix(MASK_UNFREEZE, "trainer fixes (lowlight_train.py)", (
        SubSwitch(MASK_UNFREEZE_UNFREEZE, "mask predictor unfreeze in stage 2",
                  "per batch of epoch 15: requires_grad and mask LR x0.1 on every batch (LR collapse)",
                  "once at the start of epoch 15: requires_grad and mask LR = 2e-5"),
        SubSwitch(MASK_UNFREEZE_GRAD_CLIP, "gradient clip max-norm", "0.25", "0.5",
                  {"optim.grad_clip": (0.25, 0.5)}),
        SubSwitch(MASK_UNFREEZE_VAL_NAN_GUARD, "skip validation batches with non-finite metrics",
                  "none: NaN propagates into the epoch mean", "skip and count"),
        SubSwitch(MASK_UNFREEZE_OTHER_LR, "LR of the 'other' param group", "1e-5", "2e-5",
                  {"optim.lr_other": (1e-5, 2e-5)}),
        SubSwitch(MASK_UNFREEZE_COLOUR_HEAD_INIT, "colour_head weight initialisation",
                  "diag(1.1) override (0.95 off-diagonal after the flat clamp)", "identity"),
    )),
    Fix(DIFFERENTIABLE_MODEL, "non-differentiable model blocks (model.py)", (
        SubSwitch(DIFFERENTIABLE_MODEL_DECODER_SATURATION_CHECK, "decoder low-chroma replacement",
                  "if batch mean chroma < 0.1: out = Yenh + 1.5*(x - Y0)", "removed"),
        SubSwitch(DIFFERENTIABLE_MODEL_AFFINE_GRAYWORLD, "gray-world gains in colour_head",
                  "applied in training only (train/eval mismatch)", "removed"),
        SubSwitch(DIFFERENTIABLE_MODEL_AFFINE_CLAMP, "colour_head weight clamp",
                  "flat [0.95, 1.05] on all 9 weights", "identity-relative +-0.15"),
        SubSwitch(DIFFERENTIABLE_MODEL_FINAL_SATURATION_BOOST, "final saturation boost",
                  "hard if mean chroma < 0.2: chroma x2", "smooth ramp beta = clamp(2 relu(0.15-s)/0.15)"),
        SubSwitch(DIFFERENTIABLE_MODEL_CURVE_APPLICATION, "curve branch",
                  "identity: the 4-channel shape error was swallowed, curves = 0, no gradient",
                  "Zero-DCE on RGB: E + a*E*(1-E)"),
    )),
    Fix(COLOR_CLAMPS, "colour enhancer clamp ranges (color_enhancement.py)", (
        SubSwitch(COLOR_CLAMPS_ENHANCER_WEIGHT_CLAMP, "enhancer weight clamp (flat)",
                  "[0.9, 1.1]", "[0.98, 1.02]",
                  {"clamps.enhancer_weight_min": (0.9, 0.98), "clamps.enhancer_weight_max": (1.1, 1.02)}),
        SubSwitch(COLOR_CLAMPS_ENHANCER_BIAS_CLAMP, "enhancer bias clamp",
                  "[-0.03, 0.03]", "[-0.01, 0.01]",
                  {"clamps.enhancer_bias_min": (-0.03, -0.01), "clamps.enhancer_bias_max": (0.03, 0.01)}),
        SubSwitch(COLOR_CLAMPS_ENHANCER_VIBRANCE, "enhancer vibrance init and clamp",
                  "init 1.0, clamp [0.95, 1.15]", "init 1.2, clamp [0.98, 1.05]",
                  {"clamps.enhancer_vibrance_init": (1.0, 1.2),
                   "clamps.enhancer_vibrance_min": (0.95, 0.98),
                   "clamps.enhancer_vibrance_max": (1.15, 1.05)}),
        SubSwitch(COLOR_CLAMPS_ENHANCER_GAMMA_CLAMP, "enhancer channel-gamma clamp",
                  "[0.9, 1.1]", "[0.95, 1.05]",
                  {"clamps.enhancer_gamma_min": (0.9, 0.95), "clamps.enhancer_gamma_max": (1.1, 1.05)}),
    )),
)}

CORRECTIONS: dict[str, Correction] = {c.name: c for c in (
    Correction(ENHANCER_IDENTITY_CLAMP, "colour-enhancer weight clamp relative to the identity",
               "flat element-wise clamp: off-diagonals jump to >= 0.98, output ~R+G+B, grey",
               "W in [I - d, I + d], d = clamps.enhancer_identity_delta", "§2.1, §8.1.1"),
    Correction(SINGLE_MASK_SQUARE, "square the mask once, identically in train and eval",
               "predictor squares in eval / after 1000 calls, blend squares again (m^2 vs m^4)",
               "predictor never squares; blend weight m^2 always", "§1.4.12, §8.1.2"),
    Correction(PER_IMAGE_DECISIONS, "per-image statistics instead of batch scalars",
               "curve damping, colour check, final boost, decoder denorm use batch means",
               "each image decides from its own statistics; decoder input is always denormalised",
               "§8.1.3"),
    Correction(PERCEPTUAL_LOSS, "enable the VGG perceptual term with ImageNet normalisation",
               "never enabled; (x-0.5)*2 input scaling",
               "enabled when loss.perceptual_weights is given; ImageNet mean/std, target detached",
               "§3.2, §8.1.4"),
    Correction(AFFINE_DECAY, "attach the colour-affine weight decay term",
               "dead: the attribute it needs is never set",
               "mean((W - I)^2) of colour_head, weighted by loss.w_affine_decay", "§3.2, §8.1.5"),
    Correction(STAGE1_WEIGHTS, "stage 1 uses its STAGE_WEIGHTS with the full loss",
               "fixed 0.7*L1 + 0.3*MSE", "full loss with the stage1.* weights", "§4.2, §8.1.7"),
    Correction(NO_LOSS_CLAMP, "no clamp of the total loss",
               "clamp to [0, 5] in the loss and [0, 3] in the trainer (zero gradient above)",
               "unclamped; non-finite losses still skipped by the guard", "§8.1.8"),
    Correction(SCHEDULER_EVERY_EPOCH, "step the LR scheduler every epoch",
               "stepped on validation epochs only, LR barely anneals", "stepped every epoch",
               "§5.1, §8.1.9"),
    Correction(RESET_BEST_PER_STAGE, "reset best score and patience per stage",
               "best_score carries across stages (stage-3 composite vs stage-2 PSNR)",
               "reset at each stage change", "§5.8, §8.1.10"),
    Correction(FROZEN_BN_EVAL, "frozen backbone BatchNorms stay in eval mode",
               "running statistics of frozen layers drift in training", "frozen BNs in eval mode",
               "§1.4.4, §8.1.15"),
    Correction(UNSATURATED_GUIDANCE, "guidance map that is not saturated",
               "clamp01(snr + distraction): mostly 1, zero gradient",
               "(snr + distraction) / 2", "§1.4.9, §8.1.16"),
    Correction(CIRCULAR_HUE, "circular hue distance in the colour-consistency loss",
               "MSE of hue/6, red wraps at 0/1", "MSE of the wrapped hue difference", "§3.2, §8.1.23"),
)}

_ALL_SUBS: tuple[str, ...] = tuple(s.name for f in FIXES.values() for s in f.subs)
_SUB_BY_NAME: dict[str, SubSwitch] = {s.name: s for f in FIXES.values() for s in f.subs}
_POST_FIX: dict[str, Any] = {key: after for s in _SUB_BY_NAME.values()
                             for key, (_before, after) in s.config_values.items()}


def sub_switch(name: str) -> SubSwitch:
    return _SUB_BY_NAME[name]


def post_fix_value(key: str) -> Any:
    """The post-fix (AFTER) value of a flat config key a fix changed: the config's default."""
    return _POST_FIX[key]


def post_fix_values(section: str) -> dict[str, Any]:
    """``name -> post-fix value`` of the keys of config section ``section`` that a fix changed."""
    prefix = f"{section}."
    return {key[len(prefix):]: value for key, value in _POST_FIX.items() if key.startswith(prefix)}


def expand(name: str) -> tuple[str, ...]:
    """Map a fix name, a ``fix.sub`` name or an unambiguous bare sub name to sub-switch names."""
    if name in FIXES:
        return tuple(s.name for s in FIXES[name].subs)
    if name in _SUB_BY_NAME:
        return (name,)
    bare = [s for s in _ALL_SUBS if s.split(".", 1)[1] == name]
    if len(bare) == 1:
        return (bare[0],)
    hint = did_you_mean(name, [*FIXES, *_ALL_SUBS]) or ";"
    raise ConfigError(f"unknown fix {name!r}{hint} valid fixes: {', '.join(FIXES)}; "
                      f"sub-switches: {', '.join(_ALL_SUBS)}")


def check_correction(name: str) -> str:
    if name not in CORRECTIONS:
        raise ConfigError(f"unknown correction {name!r}{did_you_mean(name, CORRECTIONS) or ';'} "
                          f"valid: {', '.join(CORRECTIONS)}")
    return name


@dataclass(frozen=True)
class FixSet:
    """Which sub-switches are on (post-fix) and which corrections are on."""
    enabled: frozenset = frozenset(_ALL_SUBS)
    corrections: frozenset = frozenset()

    @classmethod
    def all_on(cls) -> "FixSet":
        return cls(frozenset(_ALL_SUBS), frozenset())

    @classmethod
    def all_off(cls) -> "FixSet":
        return cls(frozenset(), frozenset())

    @classmethod
    def corrected(cls) -> "FixSet":
        return cls(frozenset(_ALL_SUBS), frozenset(CORRECTIONS))

    @classmethod
    def profile(cls, name: str) -> "FixSet":
        if name not in PROFILES:
            raise ConfigError(f"unknown fix profile {name!r}{did_you_mean(name, PROFILES) or ';'} "
                              f"valid: {', '.join(PROFILES)}")
        return _PROFILE_SETS[name]()

    def without(self, *names: str) -> "FixSet":
        drop = {s for n in names for s in expand(n)}
        return FixSet(self.enabled - drop, self.corrections)

    def with_fixes(self, *names: str) -> "FixSet":
        add = {s for n in names for s in expand(n)}
        return FixSet(self.enabled | add, self.corrections)

    def with_corrections(self, *names: str) -> "FixSet":
        return FixSet(self.enabled, self.corrections | {check_correction(n) for n in names})

    def on(self, sub: str) -> bool:
        """True when sub-switch ``fix.sub`` has its post-fix behaviour."""
        if sub not in _SUB_BY_NAME:
            raise KeyError(f"unknown sub-switch {sub!r}")
        return sub in self.enabled

    def corrects(self, name: str) -> bool:
        if name not in CORRECTIONS:
            raise KeyError(f"unknown correction {name!r}")
        return name in self.corrections

    def disabled(self) -> tuple[str, ...]:
        return tuple(s for s in _ALL_SUBS if s not in self.enabled)

    def disabled_fixes(self) -> tuple[str, ...]:
        """Fix names with at least one sub-switch off (whole-fix granularity, for labels)."""
        return tuple(f.name for f in FIXES.values() if any(s.name not in self.enabled for s in f.subs))

    def label(self) -> str:
        if self == FixSet.corrected():
            return "corrected"
        if self == FixSet.all_on():
            return "all-on"
        if self == FixSet.all_off():
            return "all-off (pre-fix)"
        parts = [f"-{n}" for n in _compact(self.disabled())]
        parts += [f"+{c}" for c in sorted(self.corrections)]
        return " ".join(parts) or "all-on"

    def config_defaults(self) -> dict[str, Any]:
        """Flat config values implied by this fix set (before-values of the switched-off subs)."""
        out: dict[str, Any] = {}
        for sub in _SUB_BY_NAME.values():
            for key, (before, after) in sub.config_values.items():
                out[key] = after if sub.name in self.enabled else before
        return out

    # -- config section round trip -----------------------------------------------------------
    @classmethod
    def from_config(cls, section: "FixesConfig") -> "FixSet":
        fs = cls.profile(section.profile)
        fs = fs.without(*section.disable) if section.disable else fs
        fs = fs.with_fixes(*section.enable) if section.enable else fs
        return fs.with_corrections(*section.corrections) if section.corrections else fs

    def to_overrides(self) -> dict[str, Any]:
        """Flat ``fixes.*`` overrides that reproduce this fix set from the post-fix profile."""
        return {"fixes.profile": POST_FIX, "fixes.disable": list(_compact(self.disabled())),
                "fixes.enable": [], "fixes.corrections": sorted(self.corrections)}

    def tags(self) -> dict[str, str]:
        """One tag per fix ("on"/"off"/"partial") and per correction, for tracking."""
        out = {}
        for f in FIXES.values():
            n_on = sum(s.name in self.enabled for s in f.subs)
            out[f"fix.{f.name}"] = "on" if n_on == len(f.subs) else "off" if n_on == 0 else "partial"
        for c in CORRECTIONS:
            out[f"correction.{c}"] = "on" if c in self.corrections else "off"
        return out


# profile -> the fix set it selects; its keys are the choices of ``fixes.profile``
_PROFILE_SETS = {POST_FIX: FixSet.all_on, PRE_FIX: FixSet.all_off, CORRECTED: FixSet.corrected}
PROFILES = tuple(_PROFILE_SETS)


def _compact(subs: Iterable[str]) -> tuple[str, ...]:
    """Collapse sub-switch names into fix names where every sub of a fix is listed."""
    subs = set(subs)
    out: list[str] = []
    for f in FIXES.values():
        names = {s.name for s in f.subs}
        if names <= subs:
            out.append(f.name)
        else:
            out.extend(s for s in _ALL_SUBS if s in names & subs)
    return tuple(out)


def fixes_of(cfg) -> FixSet:
    """The fix set a resolved :class:`remdinet.config.Config` selects."""
    return FixSet.from_config(cfg.fixes)
