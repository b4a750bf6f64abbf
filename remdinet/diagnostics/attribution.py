"""Which fix or correction switch addresses a finding.

Each mechanism the doctor can observe is governed by an ordered list of switches (sub-switches of a
fix, ``fix.sub``, or correction names): the first one that is *not* in its repaired state in the run's
fix set is the one that addresses the finding. When all of them are repaired, the defect is one no
switch covers and the finding says so (:data:`~.report.UNATTRIBUTED`).
"""
from __future__ import annotations

from remdinet.fixes import (AFFINE_DECAY, COLOR_CLAMPS_ENHANCER_BIAS_CLAMP,
                            COLOR_CLAMPS_ENHANCER_GAMMA_CLAMP, COLOR_CLAMPS_ENHANCER_VIBRANCE,
                            COLOR_CLAMPS_ENHANCER_WEIGHT_CLAMP, COLOR_DIVERSITY_LOSS_FORMULA,
                            CORRECTIONS, DIFFERENTIABLE_MODEL_AFFINE_CLAMP,
                            DIFFERENTIABLE_MODEL_AFFINE_GRAYWORLD,
                            DIFFERENTIABLE_MODEL_CURVE_APPLICATION,
                            DIFFERENTIABLE_MODEL_DECODER_SATURATION_CHECK,
                            DIFFERENTIABLE_MODEL_FINAL_SATURATION_BOOST, ENHANCER_IDENTITY_CLAMP,
                            FROZEN_BN_EVAL, MASK_UNFREEZE_COLOUR_HEAD_INIT, MASK_UNFREEZE_UNFREEZE,
                            NO_LOSS_CLAMP, PERCEPTUAL_LOSS, PER_IMAGE_DECISIONS,
                            RAMP_KEYS_RAMP_KEYS, SINGLE_MASK_SQUARE, STAGE1_WEIGHTS,
                            UNSATURATED_GUIDANCE, FixSet, expand)

# mechanism -> switches that govern it, most specific first
GOVERNED_BY: dict[str, tuple[str, ...]] = {
    # losses
    "term:color_diversity": (COLOR_DIVERSITY_LOSS_FORMULA,),
    "term:curve_penalty": (DIFFERENTIABLE_MODEL_CURVE_APPLICATION,),
    "dead:perceptual": (PERCEPTUAL_LOSS,),
    "dead:affine_decay": (AFFINE_DECAY,),
    "dead:stage1": (STAGE1_WEIGHTS,),
    "supervision": (RAMP_KEYS_RAMP_KEYS,),
    "loss_clamp": (NO_LOSS_CLAMP,),
    # optimiser
    "lr:mask": (MASK_UNFREEZE_UNFREEZE,),
    # blocks that receive no gradient / block the input gradient
    "block:curve_estimator": (DIFFERENTIABLE_MODEL_CURVE_APPLICATION,),
    "block:colour_head": (DIFFERENTIABLE_MODEL_AFFINE_CLAMP, MASK_UNFREEZE_COLOUR_HEAD_INIT),
    "block:color_enhancer": (ENHANCER_IDENTITY_CLAMP, COLOR_CLAMPS_ENHANCER_WEIGHT_CLAMP,
                             COLOR_CLAMPS_ENHANCER_GAMMA_CLAMP, COLOR_CLAMPS_ENHANCER_BIAS_CLAMP,
                             COLOR_CLAMPS_ENHANCER_VIBRANCE),
    "block:semantic": (DIFFERENTIABLE_MODEL_DECODER_SATURATION_CHECK,),
    "block:snr_module": (UNSATURATED_GUIDANCE,),
    # The learned SNR map reaches the loss through the curve input and the (clamped) guidance.
    "block:snr_estimator": (DIFFERENTIABLE_MODEL_CURVE_APPLICATION, UNSATURATED_GUIDANCE),
    "block:mask_predictor": (UNSATURATED_GUIDANCE,),
    "frozen_bn": (FROZEN_BN_EVAL,),
    # train/eval mode dependence, by block
    "mode:mask_predictor": (SINGLE_MASK_SQUARE,),
    "mode:colour_head": (DIFFERENTIABLE_MODEL_AFFINE_GRAYWORLD,),
    # data-dependent Python branches and batch coupling
    "branch:decoder_saturation_check": (DIFFERENTIABLE_MODEL_DECODER_SATURATION_CHECK,
                                        PER_IMAGE_DECISIONS),
    "branch:affine_grayworld": (DIFFERENTIABLE_MODEL_AFFINE_GRAYWORLD, PER_IMAGE_DECISIONS),
    "branch:final_saturation_boost": (DIFFERENTIABLE_MODEL_FINAL_SATURATION_BOOST,
                                      PER_IMAGE_DECISIONS),
    "branch:curve_damping": (PER_IMAGE_DECISIONS,),
    "branch:curve_colour_check": (PER_IMAGE_DECISIONS,),
    "branch:decoder_denorm": (PER_IMAGE_DECISIONS,),
    "batch_dependence": (PER_IMAGE_DECISIONS,),
    # clamped parameters
    "clamp:color_enhancer.weight": (ENHANCER_IDENTITY_CLAMP, COLOR_CLAMPS_ENHANCER_WEIGHT_CLAMP),
    "clamp:color_enhancer.bias": (COLOR_CLAMPS_ENHANCER_BIAS_CLAMP,),
    # A flat colour-matrix clamp (either head) greys the output, so the loss presses the vibrance
    # against its upper bound (measured on the tiny slice: 100 % at bound with either flat clamp,
    # 11 % -- the first forwards, before the loss pulls it down -- with both identity-relative).
    "clamp:color_enhancer.vibrance_factor": (COLOR_CLAMPS_ENHANCER_VIBRANCE,
                                             ENHANCER_IDENTITY_CLAMP,
                                             DIFFERENTIABLE_MODEL_AFFINE_CLAMP),
    "clamp:color_enhancer.channel_gamma": (COLOR_CLAMPS_ENHANCER_GAMMA_CLAMP,),
    "clamp:colour_head.weight": (DIFFERENTIABLE_MODEL_AFFINE_CLAMP,
                                 MASK_UNFREEZE_COLOUR_HEAD_INIT),
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
