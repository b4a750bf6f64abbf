"""Which fix or correction switch addresses a finding.

Each mechanism the doctor can observe is governed by an ordered list of switches (sub-switches of a
fix, ``fix.sub``, or correction names): the first one that is *not* in its repaired state in the run's
fix set is the one that addresses the finding. When all of them are repaired, the defect is one no
switch covers and the finding says so (:data:`~.report.UNATTRIBUTED`).
"""
from __future__ import annotations

from remdinet.fixes import CORRECTIONS, FixSet, expand

# mechanism -> switches that govern it, most specific first
GOVERNED_BY: dict[str, tuple[str, ...]] = {
    # losses
    "term:color_diversity": ("color_diversity_loss.formula",),
    "term:curve_penalty": ("differentiable_model.curve_application",),
    "dead:perceptual": ("perceptual_loss",),
    "dead:affine_decay": ("affine_decay",),
    "dead:stage1": ("stage1_weights",),
    "supervision": ("ramp_keys.ramp_keys",),
    "loss_clamp": ("no_loss_clamp",),
    # optimiser
    "lr:mask": ("mask_unfreeze.unfreeze",),
    # blocks that receive no gradient / block the input gradient
    "block:curve_estimator": ("differentiable_model.curve_application",),
    "block:colour_head": ("differentiable_model.affine_clamp", "mask_unfreeze.colour_head_init"),
    "block:color_enhancer": ("enhancer_identity_clamp", "color_clamps.enhancer_weight_clamp",
                             "color_clamps.enhancer_gamma_clamp", "color_clamps.enhancer_bias_clamp",
                             "color_clamps.enhancer_vibrance"),
    "block:semantic": ("differentiable_model.decoder_saturation_check",),
    "block:snr_module": ("unsaturated_guidance",),
    # The learned SNR map reaches the loss through the curve input and the (clamped) guidance.
    "block:snr_estimator": ("differentiable_model.curve_application", "unsaturated_guidance"),
    "block:mask_predictor": ("unsaturated_guidance",),
    "frozen_bn": ("frozen_bn_eval",),
    # train/eval mode dependence, by block
    "mode:mask_predictor": ("single_mask_square",),
    "mode:colour_head": ("differentiable_model.affine_grayworld",),
    # data-dependent Python branches and batch coupling
    "branch:decoder_saturation_check": ("differentiable_model.decoder_saturation_check",
                                        "per_image_decisions"),
    "branch:affine_grayworld": ("differentiable_model.affine_grayworld", "per_image_decisions"),
    "branch:final_saturation_boost": ("differentiable_model.final_saturation_boost",
                                      "per_image_decisions"),
    "branch:curve_damping": ("per_image_decisions",),
    "branch:curve_colour_check": ("per_image_decisions",),
    "branch:decoder_denorm": ("per_image_decisions",),
    "batch_dependence": ("per_image_decisions",),
    # clamped parameters
    "clamp:color_enhancer.weight": ("enhancer_identity_clamp", "color_clamps.enhancer_weight_clamp"),
    "clamp:color_enhancer.bias": ("color_clamps.enhancer_bias_clamp",),
    # A flat colour-matrix clamp (either head) greys the output, so the loss presses the vibrance
    # against its upper bound (measured on the tiny slice: 100 % at bound with either flat clamp,
    # 11 % -- the first forwards, before the loss pulls it down -- with both identity-relative).
    "clamp:color_enhancer.vibrance_factor": ("color_clamps.enhancer_vibrance",
                                             "enhancer_identity_clamp",
                                             "differentiable_model.affine_clamp"),
    "clamp:color_enhancer.channel_gamma": ("color_clamps.enhancer_gamma_clamp",),
    "clamp:colour_head.weight": ("differentiable_model.affine_clamp",
                                 "mask_unfreeze.colour_head_init"),
}


def is_repaired(fixset: FixSet, switch: str) -> bool:
    if switch in CORRECTIONS:
        return fixset.corrects(switch)
    return all(fixset.on(sub) for sub in expand(switch))


def switch_name(switch: str) -> str:
    """The fix (for a sub-switch) or correction a switch belongs to."""
    return switch if switch in CORRECTIONS else switch.split(".", 1)[0]


def attribute(fixset: FixSet, mechanism: str) -> tuple[str | None, str | None]:
    """``(addressed_by, switch)`` for a mechanism: the first governing switch not repaired in
    ``fixset``, as (fix or correction name, exact switch); (None, None) when every governing switch
    is repaired or the mechanism has none."""
    for switch in GOVERNED_BY.get(mechanism, ()):
        if not is_repaired(fixset, switch):
            return switch_name(switch), switch
    return None, None
