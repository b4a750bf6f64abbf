"""``UnifiedLowLightEnhancer``: composition of the blocks (§1.1, §1.3, §1.5).

Every fix decision is read from the :class:`FixSet` (``fixes.on`` / ``fixes.corrects``) at
construction. Differences from the reference that are not switches:

* no silent fallbacks: a failing block raises :class:`BlockError` naming it;
* dead modules are not built (intelligent blending, contrast refinement, saliency, multi-scale
  convs), and the learnable SNR estimator is only built when the SNR module that consumes it is;
* the unused runtime toggles ``skip_mask`` / ``use_curve_only`` are not implemented;
* constant placeholder outputs (zero ``curves`` of the pre-fix curve branch, zero SNR maps and
  semantic placeholders of absent branches) are broadcast views of one zero, not allocated tensors;
  call ``.contiguous()`` before writing into them.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..colour import denormalize
from ..config import ClampConfig, ModelConfig
from ..fixes import (DIFFERENTIABLE_MODEL_AFFINE_CLAMP, DIFFERENTIABLE_MODEL_AFFINE_GRAYWORLD,
                     DIFFERENTIABLE_MODEL_CURVE_APPLICATION,
                     DIFFERENTIABLE_MODEL_DECODER_SATURATION_CHECK,
                     DIFFERENTIABLE_MODEL_FINAL_SATURATION_BOOST, ENHANCER_IDENTITY_CLAMP,
                     FROZEN_BN_EVAL, MASK_UNFREEZE_COLOUR_HEAD_INIT, PER_IMAGE_DECISIONS,
                     SINGLE_MASK_SQUARE, UNSATURATED_GUIDANCE, FixSet)
from .branches import BranchRecorder, Decisions
from .clamps import Bound, ClampRecorder
from .colour import EnhancedGlobalColorCorrection, GlobalColourAffine, final_saturation_boost
from .curve import ImprovedCurveEstimator
from .errors import run_block
from .mask import MaskPredictor
from .semantic import NUM_CLASSES, MobileNetSemanticGuidance
from .snr import LearnableSNREstimator, SNRAwareDistractionModule

PAD_MULTIPLE = 32


class UnifiedLowLightEnhancer(nn.Module):
    """ImageNet-normalised B×3×H×W in, the output dict of §1.5 out (``enhanced`` in [0, 1])."""

    def __init__(self, model_cfg: ModelConfig, clamps: ClampConfig, fixes: FixSet) -> None:
        super().__init__()
        cfg = model_cfg
        self.num_iterations = cfg.num_iterations
        self.channels_last = cfg.channels_last
        self.branches = BranchRecorder()
        self.decisions = Decisions(fixes.corrects(PER_IMAGE_DECISIONS), self.branches)
        self.clamp_recorder = ClampRecorder()
        self.unsaturated_guidance = fixes.corrects(UNSATURATED_GUIDANCE)
        self.smooth_boost = fixes.on(DIFFERENTIABLE_MODEL_FINAL_SATURATION_BOOST)

        self.snr_module = self.snr_estimator = None
        if cfg.use_snr_awareness:
            self.snr_module = SNRAwareDistractionModule(cfg.snr_hidden, cfg.snr_tiny_mode)
            if cfg.use_learnable_snr:
                self.snr_estimator = LearnableSNREstimator(cfg.snr_hidden)

        self.semantic = None
        if cfg.use_semantic_guidance:
            self.semantic = MobileNetSemanticGuidance(
                cfg, self.decisions, frozen_bn_eval=fixes.corrects(FROZEN_BN_EVAL),
                saturation_check=not fixes.on(DIFFERENTIABLE_MODEL_DECODER_SATURATION_CHECK))

        # The pre-fix curve branch raised a swallowed shape error on every call, so it acted as the
        # identity; the estimator is still built (same parameters) but not run.
        if fixes.on(DIFFERENTIABLE_MODEL_CURVE_APPLICATION):
            self.curve_mode = "zero_dce"
        else:
            self.curve_mode = "identity" if cfg.before_curve_mode == "actual" else "additive"
        self.curve_estimator = ImprovedCurveEstimator(
            cfg.num_iterations, cfg.curve_hidden,
            "additive" if self.curve_mode == "additive" else "zero_dce", self.decisions)

        self.mask_predictor = MaskPredictor(
            5, cfg.mask_hidden, square_output=not fixes.corrects(SINGLE_MASK_SQUARE))

        self.colour_head = None
        if not cfg.disable_color_affine:
            weight_bound = (Bound.around_identity(clamps.affine_identity_clamp)
                            if fixes.on(DIFFERENTIABLE_MODEL_AFFINE_CLAMP)
                            else Bound.flat(clamps.affine_flat_min, clamps.affine_flat_max))
            self.colour_head = GlobalColourAffine(
                init_diag=1.0 if fixes.on(MASK_UNFREEZE_COLOUR_HEAD_INIT) else 1.1,
                weight_bound=weight_bound,
                bias_bound=Bound.flat(clamps.affine_bias_min, clamps.affine_bias_max),
                grayworld=not fixes.on(DIFFERENTIABLE_MODEL_AFFINE_GRAYWORLD),
                decisions=self.decisions, recorder=self.clamp_recorder)

        self.color_enhancer = None
        if not cfg.disable_color_enhancer:
            self.color_enhancer = EnhancedGlobalColorCorrection(
                clamps, identity_clamp=fixes.corrects(ENHANCER_IDENTITY_CLAMP),
                recorder=self.clamp_recorder)

        if self.channels_last:
            self.to(memory_format=torch.channels_last)

    # -- diagnostics ------------------------------------------------------------------------
    def clamp_report(self) -> dict[str, float]:
        """Fraction of elements of each clamped parameter at a bound, averaged over the forwards
        since :meth:`reset_clamp_report`."""
        return self.clamp_recorder.report()

    def reset_clamp_report(self) -> None:
        self.clamp_recorder.reset()

    # -- forward ----------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> dict:
        b, _, h0, w0 = x.shape
        x01 = denormalize(x)
        ph, pw = (-h0) % PAD_MULTIPLE, (-w0) % PAD_MULTIPLE
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
            x01 = F.pad(x01, (0, pw, 0, ph), mode="replicate")
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
            x01 = x01.contiguous(memory_format=torch.channels_last)
        h, w = x.shape[-2:]
        zero = x01.new_zeros(())

        if self.snr_module is not None:
            learned = (run_block("snr_estimator", self.snr_estimator, x01.detach())
                       if self.snr_estimator is not None else None)
            distraction, snr_map, _content = run_block("snr_module", self.snr_module, x01, learned)
            both = snr_map + distraction
            guidance = both * 0.5 if self.unsaturated_guidance else both.clamp(0.0, 1.0)
        else:
            distraction = snr_map = guidance = zero.expand(b, 1, h, w)

        if self.semantic is not None:
            semantic_enhanced, semantic_features = run_block("semantic", self.semantic, x, x01)
            sem_map = semantic_features["probs"].amax(dim=1, keepdim=True)
        else:
            semantic_enhanced = x01
            placeholder = zero.expand(b, NUM_CLASSES, h, w)
            semantic_features = {"logits": placeholder, "probs": placeholder,
                                 "backbone_features": {}, "multi_scale": []}
            sem_map = zero.expand(b, 1, h, w)

        if self.curve_mode == "identity":
            curve_enhanced = x01
            curves = zero.expand(b, 3 * self.num_iterations, h, w)
        else:
            curve_enhanced, curves = run_block("curve_estimator", self.curve_estimator,
                                               torch.cat([x01, snr_map], dim=1))
            d = self.decisions
            ce = curve_enhanced
            curve_enhanced = d.apply("curve_damping", d.mean(ce) > 0.85,
                                     lambda: x01 + 0.8 * (ce - x01), ce)

        mask = run_block("mask_predictor", self.mask_predictor, x01, guidance, sem_map)
        weight = mask * mask
        final = (weight * curve_enhanced + (1.0 - weight) * semantic_enhanced).clamp(0.0, 1.0)
        if self.colour_head is not None:
            final = run_block("colour_head", self.colour_head, final)
        if self.color_enhancer is not None:
            final = run_block("color_enhancer", self.color_enhancer, final)

        def crop(t: torch.Tensor) -> torch.Tensor:
            return t[..., :h0, :w0]

        enhanced = final_saturation_boost(crop(final), self.smooth_boost, self.decisions)
        return {
            "enhanced": enhanced,
            "mask": crop(mask),
            "distraction_mask": crop(distraction),
            "snr_map": crop(snr_map),
            "semantic_features": semantic_features,
            "curves": crop(curves),
            "curve_enhanced": crop(curve_enhanced),
            "semantic_enhanced": crop(semantic_enhanced),
        }
