"""The RemDiNet model: ``build_model(cfg)`` -> :class:`UnifiedLowLightEnhancer`."""
from __future__ import annotations

from ..config import Config
from ..fixes import fixes_of
from .attention import SpatialAttention
from .backbone import BackboneWeightsError, MobileNetV3Backbone, load_backbone_weights
from .branches import BRANCH_NAMES, BranchRecorder, Decisions
from .clamps import Bound, ClampRecorder, install_clamps
from .colour import (EnhancedGlobalColorCorrection, GlobalColourAffine, boost_beta,
                     final_saturation_boost)
from .curve import ImprovedCurveEstimator
from .enhancer import UnifiedLowLightEnhancer
from .errors import BlockError, run_block
from .mask import MaskPredictor
from .semantic import MobileNetSemanticGuidance, SemanticHead, TransformerDecoder
from .snr import LearnableSNREstimator, SNRAwareDistractionModule
from .transformer import RestormerBlock, WindowMSA


def build_model(cfg: Config) -> UnifiedLowLightEnhancer:
    """The model a resolved config describes (fix set from ``cfg.fixes``)."""
    return UnifiedLowLightEnhancer(cfg.model, cfg.clamps, fixes_of(cfg))


__all__ = [
    "BRANCH_NAMES", "BackboneWeightsError", "BlockError", "Bound", "BranchRecorder",
    "ClampRecorder", "Decisions", "EnhancedGlobalColorCorrection", "GlobalColourAffine",
    "ImprovedCurveEstimator", "LearnableSNREstimator", "MaskPredictor", "MobileNetSemanticGuidance",
    "MobileNetV3Backbone", "RestormerBlock", "SNRAwareDistractionModule", "SemanticHead",
    "SpatialAttention", "TransformerDecoder", "UnifiedLowLightEnhancer", "WindowMSA", "boost_beta",
    "build_model", "final_saturation_boost", "install_clamps", "load_backbone_weights", "run_block",
]
