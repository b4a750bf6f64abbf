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
from typing import Any, Iterable

from .config import ConfigError, FixesConfig


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
    Fix("color_diversity_loss", "differentiable colour-diversity loss (Myloss.py)", (
        SubSwitch("color_diversity_loss.formula",
                  "colour-diversity loss formula",
                  "piecewise ((tau-s)/tau)^2 / constant 0.5 / constant 0 on batch scalars; the "
                  "constant branches carry no gradient",
                  "0.5*exp(-15*div) + 0.5*exp(-10*mean saturation)"),
    )),
    Fix("ramp_keys", "RAMP_KEYS, stage weights and thresholds (loss_weights.py)", (
        SubSwitch("ramp_keys.ramp_keys", "which stage-2 weights the cosine warm-up ramps",
                  "also w_reconstruction and w_ssim", "colour, diversity, exposure, edge only",
                  {"ramp.keys": (_BEFORE_RAMP, _AFTER_RAMP)}),
        SubSwitch("ramp_keys.stage_weights", "per-stage loss weights (stage 1 is inert)",
                  "BEFORE columns of §4.2", "AFTER columns of §4.2",
                  {**_stage_values(1, (1.00, 0.30, 0.50, 0.00, 0.00, 0.50, 0.00, 0.00),
                                   (1.20, 0.20, 0.30, 0.00, 0.00, 0.60, 0.00, 0.00)),
                   **_stage_values(2, (1.35, 0.05, 0.05, 0.07, 0.09, 0.25, 0.00, 0.05),
                                   (1.35, 0.07, 0.07, 0.07, 0.12, 0.45, 0.00, 0.03)),
                   **_stage_values(3, (0.95, 0.15, 0.20, 0.08, 0.18, 0.28, 0.04, 0.10),
                                   (0.90, 0.10, 0.12, 0.04, 0.20, 0.45, 0.06, 0.08))}),
        SubSwitch("ramp_keys.color_thresholds", "COLOR_THRESHOLDS",
                  "0.18 / 0.05 / 0.35 / 1.5", "0.10 / 0.04 / 0.30 / 1.0",
                  {"color_thresholds.min_saturation": (0.18, 0.10),
                   "color_thresholds.critical_saturation": (0.05, 0.04),
                   "color_thresholds.target_saturation": (0.35, 0.30),
                   "color_thresholds.saturation_penalty_factor": (1.5, 1.0)}),
        SubSwitch("ramp_keys.training_defaults", "TRAINING_DEFAULTS batch/size",
                  "batch 4, size 320", "batch 8, size 512 (the CLI used 8/512 in both)", inert=True),
        SubSwitch("ramp_keys.ramp_default_warmup", "ramp_colour default warm-up",
                  "15", "20 (the trainer always passes 10)", inert=True),
    )),
    Fix("mask_unfreeze", "trainer fixes (lowlight_train.py)", (
        SubSwitch("mask_unfreeze.unfreeze", "mask predictor unfreeze in stage 2",
                  "per batch of epoch 15: requires_grad and mask LR x0.1 on every batch (LR collapse)",
                  "once at the start of epoch 15: requires_grad and mask LR = 2e-5"),
        SubSwitch("mask_unfreeze.grad_clip", "gradient clip max-norm", "0.25", "0.5",
                  {"optim.grad_clip": (0.25, 0.5)}),
        SubSwitch("mask_unfreeze.val_nan_guard", "skip validation batches with non-finite metrics",
                  "none: NaN propagates into the epoch mean", "skip and count"),
        SubSwitch("mask_unfreeze.other_lr", "LR of the 'other' param group", "1e-5", "2e-5",
                  {"optim.lr_other": (1e-5, 2e-5)}),
        SubSwitch("mask_unfreeze.colour_head_init", "colour_head weight initialisation",
                  "diag(1.1) override (0.95 off-diagonal after the flat clamp)", "identity"),
    )),
    Fix("differentiable_model", "non-differentiable model blocks (model.py)", (
        SubSwitch("differentiable_model.decoder_saturation_check", "decoder low-chroma replacement",
                  "if batch mean chroma < 0.1: out = Yenh + 1.5*(x - Y0)", "removed"),
        SubSwitch("differentiable_model.affine_grayworld", "gray-world gains in colour_head",
                  "applied in training only (train/eval mismatch)", "removed"),
        SubSwitch("differentiable_model.affine_clamp", "colour_head weight clamp",
                  "flat [0.95, 1.05] on all 9 weights", "identity-relative +-0.15"),
        SubSwitch("differentiable_model.final_saturation_boost", "final saturation boost",
                  "hard if mean chroma < 0.2: chroma x2", "smooth ramp beta = clamp(2 relu(0.15-s)/0.15)"),
        SubSwitch("differentiable_model.curve_application", "curve branch",
                  "identity: the 4-channel shape error was swallowed, curves = 0, no gradient",
                  "Zero-DCE on RGB: E + a*E*(1-E)"),
    )),
    Fix("color_clamps", "colour enhancer clamp ranges (color_enhancement.py)", (
        SubSwitch("color_clamps.enhancer_weight_clamp", "enhancer weight clamp (flat)",
                  "[0.9, 1.1]", "[0.98, 1.02]",
                  {"clamps.enhancer_weight_min": (0.9, 0.98), "clamps.enhancer_weight_max": (1.1, 1.02)}),
        SubSwitch("color_clamps.enhancer_bias_clamp", "enhancer bias clamp",
                  "[-0.03, 0.03]", "[-0.01, 0.01]",
                  {"clamps.enhancer_bias_min": (-0.03, -0.01), "clamps.enhancer_bias_max": (0.03, 0.01)}),
        SubSwitch("color_clamps.enhancer_vibrance", "enhancer vibrance init and clamp",
                  "init 1.0, clamp [0.95, 1.15]", "init 1.2, clamp [0.98, 1.05]",
                  {"clamps.enhancer_vibrance_init": (1.0, 1.2),
                   "clamps.enhancer_vibrance_min": (0.95, 0.98),
                   "clamps.enhancer_vibrance_max": (1.15, 1.05)}),
        SubSwitch("color_clamps.enhancer_gamma_clamp", "enhancer channel-gamma clamp",
                  "[0.9, 1.1]", "[0.95, 1.05]",
                  {"clamps.enhancer_gamma_min": (0.9, 0.95), "clamps.enhancer_gamma_max": (1.1, 1.05)}),
    )),
)}

CORRECTIONS: dict[str, Correction] = {c.name: c for c in (
    Correction("enhancer_identity_clamp", "colour-enhancer weight clamp relative to the identity",
               "flat element-wise clamp: off-diagonals jump to >= 0.98, output ~R+G+B, grey",
               "W in [I - d, I + d], d = clamps.enhancer_identity_delta", "§2.1, §8.1.1"),
    Correction("single_mask_square", "square the mask once, identically in train and eval",
               "predictor squares in eval / after 1000 calls, blend squares again (m^2 vs m^4)",
               "predictor never squares; blend weight m^2 always", "§1.4.12, §8.1.2"),
    Correction("per_image_decisions", "per-image statistics instead of batch scalars",
               "curve damping, colour check, final boost, decoder denorm use batch means",
               "each image decides from its own statistics; decoder input is always denormalised",
               "§8.1.3"),
    Correction("perceptual_loss", "enable the VGG perceptual term with ImageNet normalisation",
               "never enabled; (x-0.5)*2 input scaling",
               "enabled when loss.perceptual_weights is given; ImageNet mean/std, target detached",
               "§3.2, §8.1.4"),
    Correction("affine_decay", "attach the colour-affine weight decay term",
               "dead: the attribute it needs is never set",
               "mean((W - I)^2) of colour_head, weighted by loss.w_affine_decay", "§3.2, §8.1.5"),
    Correction("stage1_weights", "stage 1 uses its STAGE_WEIGHTS with the full loss",
               "fixed 0.7*L1 + 0.3*MSE", "full loss with the stage1.* weights", "§4.2, §8.1.7"),
    Correction("no_loss_clamp", "no clamp of the total loss",
               "clamp to [0, 5] in the loss and [0, 3] in the trainer (zero gradient above)",
               "unclamped; non-finite losses still skipped by the guard", "§8.1.8"),
    Correction("scheduler_every_epoch", "step the LR scheduler every epoch",
               "stepped on validation epochs only, LR barely anneals", "stepped every epoch",
               "§5.1, §8.1.9"),
    Correction("reset_best_per_stage", "reset best score and patience per stage",
               "best_score carries across stages (stage-3 composite vs stage-2 PSNR)",
               "reset at each stage change", "§5.8, §8.1.10"),
    Correction("frozen_bn_eval", "frozen backbone BatchNorms stay in eval mode",
               "running statistics of frozen layers drift in training", "frozen BNs in eval mode",
               "§1.4.4, §8.1.15"),
    Correction("unsaturated_guidance", "guidance map that is not saturated",
               "clamp01(snr + distraction): mostly 1, zero gradient",
               "(snr + distraction) / 2", "§1.4.9, §8.1.16"),
    Correction("circular_hue", "circular hue distance in the colour-consistency loss",
               "MSE of hue/6, red wraps at 0/1", "MSE of the wrapped hue difference", "§3.2, §8.1.23"),
)}

PROFILES = ("post_fix", "pre_fix", "corrected")

_ALL_SUBS: tuple[str, ...] = tuple(s.name for f in FIXES.values() for s in f.subs)
_SUB_BY_NAME: dict[str, SubSwitch] = {s.name: s for f in FIXES.values() for s in f.subs}


def sub_switch(name: str) -> SubSwitch:
    return _SUB_BY_NAME[name]


def expand(name: str) -> tuple[str, ...]:
    """Map a fix name, a ``fix.sub`` name or an unambiguous bare sub name to sub-switch names."""
    if name in FIXES:
        return tuple(s.name for s in FIXES[name].subs)
    if name in _SUB_BY_NAME:
        return (name,)
    bare = [s for s in _ALL_SUBS if s.split(".", 1)[1] == name]
    if len(bare) == 1:
        return (bare[0],)
    raise ConfigError(f"unknown fix {name!r}; valid fixes: {', '.join(FIXES)}; sub-switches: "
                      f"{', '.join(_ALL_SUBS)}")


def check_correction(name: str) -> str:
    if name not in CORRECTIONS:
        raise ConfigError(f"unknown correction {name!r}; valid: {', '.join(CORRECTIONS)}")
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
            raise ConfigError(f"unknown fix profile {name!r}; valid: {', '.join(PROFILES)}")
        return {"post_fix": cls.all_on, "pre_fix": cls.all_off, "corrected": cls.corrected}[name]()

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
    def from_config(cls, section: FixesConfig) -> "FixSet":
        fs = cls.profile(section.profile)
        fs = fs.without(*section.disable) if section.disable else fs
        fs = fs.with_fixes(*section.enable) if section.enable else fs
        return fs.with_corrections(*section.corrections) if section.corrections else fs

    def to_overrides(self) -> dict[str, Any]:
        """Flat ``fixes.*`` overrides that reproduce this fix set from the post-fix profile."""
        return {"fixes.profile": "post_fix", "fixes.disable": list(_compact(self.disabled())),
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
