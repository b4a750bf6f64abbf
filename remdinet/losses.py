"""The loss terms of the reference (§3) and the per-stage criteria the trainer uses (§4, §5.4).

Notation as in §3: E = clamp01(enhanced), T = clamp01(target), I = clamp01(denormalised input). All terms
are computed in float32.

* Stage 1 is :class:`SimpleReconstructionLoss` (``0.7·L1 + 0.3·MSE``), unless the correction
  ``stage1_weights`` is on; then stage 1 uses :class:`DistractionAwareLoss` with the ``stage1.*`` weights.
* Stages 2 and 3 are :class:`DistractionAwareLoss`, every term of §3.2 in the reference's order.
* A term whose weight is 0 is not computed; every term with a weight > 0 whose condition holds (a target
  for edge/SSIM/perceptual, ``curves``/a grad-carrying ``mask`` in the output) appears in ``terms``.
  Terms that are configured (weight > 0) but can never run are listed in ``StageLoss.inactive`` with the
  reason; the ones a correction asked for but cannot honour are also logged (logger ``remdinet.losses``).
* The total is ``nan_to_num`` (NaN → 0, +Inf → the clamp bound, −Inf → 0) and clamped to
  ``[0, bound]`` (5 = ``loss.total_clamp``, 10 for the stage-1 loss), as in the reference: above the bound
  the gradient is zero (§8.1.8). The correction ``no_loss_clamp`` drops both, so a non-finite total
  reaches the trainer's guard instead of becoming a gradient-free 0.
"""
from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from .colour import hsv_saturation, hue
from .config import Config, LossConfig, StageWeights
from .fixes import (AFFINE_DECAY, CIRCULAR_HUE, COLOR_DIVERSITY_LOSS_FORMULA, NO_LOSS_CLAMP,
                    PERCEPTUAL_LOSS, STAGE1_WEIGHTS, FixSet)
from .metrics import MS_SSIM_MIN_SIDE, ms_ssim, ssim
from .perceptual import VGG19Features, load_vgg19_features, perceptual_distance

log = logging.getLogger("remdinet.losses")


@functools.cache
def _note_off(term: str, reason: str) -> None:
    # once per process: every stage, run and study trial builds its losses again, and the
    # warning says nothing new the second time (`StageLoss.inactive` keeps it per loss)
    log.warning("loss: %s term off: %s", term, reason)

SIMPLE_LOSS_CLAMP = 10.0  # §3.1: the stage-1 loss maps +Inf to 10 and clamps to [0, 10]

# The term names: the keys of LossOutput.terms / raw, logged as ``loss/<term>`` and read by the doctor.
TERM_RECONSTRUCTION = "reconstruction"
TERM_MSE = "mse"
TERM_EXPOSURE = "exposure"
TERM_CURVE_PENALTY = "curve_penalty"
TERM_EDGE = "edge"
TERM_SSIM = "ssim"
TERM_COLOUR = "colour"
TERM_COLOR_DIVERSITY = "color_diversity"
TERM_PERCEPTUAL = "perceptual"
TERM_AFFINE_DECAY = "affine_decay"
TERM_MASK_MEAN = "mask_mean"
_SOBEL_X = ((1.0, 0.0, -1.0), (2.0, 0.0, -2.0), (1.0, 0.0, -1.0))


# ------------------------------------------------------------------------------------------
# the terms (unweighted), each a scalar tensor
# ------------------------------------------------------------------------------------------

def reconstruction_l1(e: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return (e - t).abs().mean()


def reconstruction_mse(e: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return (e - t).pow(2).mean()


def exposure_loss(e: torch.Tensor, level: float) -> torch.Tensor:
    """``2·relu(level − mean E)`` over the whole batch: penalises darkness only, never brightening."""
    return 2.0 * torch.relu(level - e.mean())


def curve_penalty(curves: torch.Tensor, threshold: float) -> torch.Tensor:
    """``relu(mean|A| − threshold)`` on the raw tanh curve maps."""
    return torch.relu(curves.abs().mean() - threshold)


def sobel(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Depthwise Sobel cross-correlation with zero padding 1: (gx, gy), each B×C×H×W."""
    kx = torch.tensor(_SOBEL_X, dtype=x.dtype, device=x.device)
    kernels = torch.stack([kx, kx.t()]).unsqueeze(1).repeat(x.shape[1], 1, 1, 1)
    g = F.conv2d(x, kernels, padding=1, groups=x.shape[1])
    return g[:, 0::2], g[:, 1::2]


def edge_loss(e: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """``mean|gx_E − gx_T| + mean|gy_E − gy_T| + 0.5·mean|M_E − M_T|``, M = √(gx² + gy² + 1e-4)."""
    gx_e, gy_e = sobel(e)
    gx_t, gy_t = sobel(t)
    m_e = torch.sqrt(gx_e.pow(2) + gy_e.pow(2) + 1e-4)
    m_t = torch.sqrt(gx_t.pow(2) + gy_t.pow(2) + 1e-4)
    return (gx_e - gx_t).abs().mean() + (gy_e - gy_t).abs().mean() + 0.5 * (m_e - m_t).abs().mean()


def ssim_loss(e: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """``clamp(1 − SSIM(E, T), 0, 1)`` with SSIM averaged over the batch.

    SSIM is MS-SSIM (the reference's ``pytorch_msssim`` convention) when the smaller image side is > 160
    pixels, and single-scale Gaussian SSIM otherwise. The reference instead asserted the size inside a
    ``try`` and, for smaller crops, silently made the term the constant 1 without gradient (§8.1.18):
    a latent bug that this explicit rule replaces.
    """
    metric = ms_ssim if min(e.shape[-2:]) > MS_SSIM_MIN_SIDE else ssim
    return (1.0 - metric(e, t).mean()).clamp(0.0, 1.0)


def colour_consistency_loss(e: torch.Tensor, ref: torch.Tensor, circular_hue: bool) -> torch.Tensor:
    """Chromaticity MSE + saturation loss + 0.5·hue MSE against the reference image ``ref``.

    The hue (HSV hue / 6, in [0, 1)) is compared linearly as in the reference, where red wraps at 0/1
    (§8.1.23); ``circular_hue`` (correction) uses the wrapped distance ``min(|d|, 1 − |d|)``.
    """
    chroma_e = e / (e.sum(dim=1, keepdim=True) + 1e-8)
    chroma_r = ref / (ref.sum(dim=1, keepdim=True) + 1e-8)
    chromaticity = F.mse_loss(chroma_e, chroma_r)
    saturation = torch.relu(hsv_saturation(ref) - hsv_saturation(e)).mean()
    d = hue(e) - hue(ref)
    if circular_hue:
        d = d.abs()
        d = torch.minimum(d, 1.0 - d)
    return chromaticity + saturation + 0.5 * d.pow(2).mean()


def color_diversity_loss(e: torch.Tensor) -> torch.Tensor:
    """Fix 1 AFTER (§3.3): ``0.5·exp(−15·div) + 0.5·exp(−10·mean S(E))``, batch means, smooth."""
    r, g, b = e[:, 0], e[:, 1], e[:, 2]
    div = ((r - g).abs().mean() + (r - b).abs().mean() + (g - b).abs().mean()) / 3.0
    return 0.5 * torch.exp(-15.0 * div) + 0.5 * torch.exp(-10.0 * hsv_saturation(e).mean())


def legacy_color_diversity_loss(e: torch.Tensor, target_saturation: float) -> torch.Tensor:
    """Fix 1 BEFORE (§3.3), branch decisions in Python on batch scalars, as the original ran.

    ``((τ − s̄)/τ)²`` if ``s̄ < τ`` (differentiable); else the constant 0.5 if the mean per-pixel unbiased
    channel variance is < 0.01; else the constant 0. The constants carry no gradient.
    """
    s = hsv_saturation(e).mean()
    if s.detach().item() < target_saturation:
        return ((target_saturation - s) / target_saturation).pow(2)
    if e.detach().var(dim=1, correction=1).mean().item() < 0.01:
        return torch.tensor(0.5, device=e.device)
    return torch.tensor(0.0, device=e.device)


def affine_decay_loss(weight: torch.Tensor) -> torch.Tensor:
    """``mean((W − I)²)`` of the colour affine's 3×3 weight (decay towards the identity)."""
    w = weight.flatten(1)
    if w.shape[0] != w.shape[1]:
        raise ValueError(f"affine_decay: colour_head.weight must be square, got {tuple(weight.shape)}")
    return (w - torch.eye(w.shape[0], dtype=w.dtype, device=w.device)).pow(2).mean()


def mask_mean_loss(mask: torch.Tensor) -> torch.Tensor:
    return (mask.mean() - 0.5).pow(2)


# ------------------------------------------------------------------------------------------
# result
# ------------------------------------------------------------------------------------------

class RawValues(Mapping):
    """Unweighted term values for logging (``name -> float``).

    Held as detached tensors and converted on the first read, all at once with a single device sync,
    so a training step that does not read them never waits for the device. ``tensors()`` gives the
    detached tensors themselves (for accumulating on the device). Values are not ``nan_to_num``'d: a
    non-finite term shows as such in the logs.
    """

    def __init__(self, tensors: dict[str, torch.Tensor]):
        self._tensors = tensors
        self._floats: dict[str, float] | None = None

    def _values(self) -> dict[str, float]:
        if self._floats is None:
            numbers = (torch.stack([t.float().reshape(()) for t in self._tensors.values()]).tolist()
                       if self._tensors else [])
            self._floats = dict(zip(self._tensors, numbers))
        return self._floats

    def tensors(self) -> dict[str, torch.Tensor]:
        return dict(self._tensors)

    def __getitem__(self, name: str) -> float:
        return self._values()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._tensors)

    def __len__(self) -> int:
        return len(self._tensors)

    def __repr__(self) -> str:
        return f"RawValues({self._values()!r})"


@dataclass
class LossOutput:
    """``total``: the (clamped) loss to backpropagate; ``terms``: the weighted differentiable
    contributions, summing to the total before clamping; ``raw``: the unweighted values."""
    total: torch.Tensor
    terms: dict[str, torch.Tensor]
    raw: RawValues


# ------------------------------------------------------------------------------------------
# stage criteria
# ------------------------------------------------------------------------------------------

def _clamp01(x: torch.Tensor) -> torch.Tensor:
    return x.float().clamp(0.0, 1.0)


def _image_like(name: str, x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
    if x.shape != e.shape:
        raise ValueError(f"loss: {name} has shape {tuple(x.shape)}, the enhanced image {tuple(e.shape)}")
    return _clamp01(x)


class StageLoss(nn.Module):
    """The criterion of one stage: ``forward(out, target, input01) -> LossOutput``.

    ``weights`` is a private copy of the stage's :class:`StageWeights`, read on every call: the trainer
    writes ramped weights into it between epochs. ``clamp_bound`` is None under ``no_loss_clamp``.
    """

    def __init__(self, stage: int, weights: StageWeights, clamp_bound: float | None):
        super().__init__()
        self.stage = stage
        self.weights = weights
        self.clamp_bound = clamp_bound
        self.inactive: dict[str, str] = {}

    def _finish(self, terms: dict[str, torch.Tensor], raw: dict[str, torch.Tensor],
                e: torch.Tensor) -> LossOutput:
        total = sum(terms.values(), e.new_zeros(()))
        if self.clamp_bound is not None:
            total = torch.nan_to_num(total, nan=0.0, posinf=self.clamp_bound, neginf=0.0)
            total = total.clamp(0.0, self.clamp_bound)
        return LossOutput(total, terms, RawValues(raw))


class SimpleReconstructionLoss(StageLoss):
    """§3.1, the reference's only stage-1 loss: ``l1·mean|E − T| + mse·mean((E − T)²)``.

    It ignores ``weights`` (the reference's stage-1 STAGE_WEIGHTS are inert), the mask, the curves and
    colour. Terms: ``reconstruction`` (the L1 part, named like the later stages' L1 term so that
    :func:`mix_losses` adds up the effective L1 coefficient) and ``mse``. Without a target both are the
    constant 0, without gradient, as in the reference.
    """

    def __init__(self, weights: StageWeights, l1: float, mse: float, clamp_bound: float | None):
        super().__init__(1, weights, clamp_bound)
        self.l1 = l1
        self.mse = mse

    def forward(self, out: dict, target: torch.Tensor | None, input01: torch.Tensor) -> LossOutput:
        e = _clamp01(out["enhanced"])
        terms: dict[str, torch.Tensor] = {}
        raw: dict[str, torch.Tensor] = {}
        for name, weight, fn in ((TERM_RECONSTRUCTION, self.l1, reconstruction_l1),
                                 (TERM_MSE, self.mse, reconstruction_mse)):
            if weight > 0:
                value = e.new_zeros(()) if target is None else fn(e, _image_like("target", target, e))
                terms[name] = weight * value
                raw[name] = value.detach()
        return self._finish(terms, raw, e)


class _Batch(NamedTuple):
    """What a term reads: the model output, E, T (None when unpaired) and the input image."""
    out: dict
    e: torch.Tensor
    t: torch.Tensor | None
    input01: torch.Tensor


@dataclass(frozen=True)
class Term:
    """One term of :class:`DistractionAwareLoss`. ``weight_key`` names a :class:`StageWeights`
    field, or a :class:`LossConfig` field as ``loss.<name>``; a term whose weight is 0 is not
    computed. ``needs_target``: absent from an unpaired batch. ``unsupervised_factor``: the
    ``loss.*`` factor its weight is multiplied by on an unpaired batch. ``fn(loss, batch)`` is the
    unweighted value, or None when what it reads is absent (no curves, no VGG, ...)."""
    name: str
    weight_key: str
    needs_target: bool
    fn: Callable[["DistractionAwareLoss", _Batch], torch.Tensor | None]
    unsupervised_factor: str | None = None

    def weight(self, weights: StageWeights, loss_cfg: LossConfig, supervised: bool) -> float:
        section, _, key = self.weight_key.rpartition(".")
        w = getattr(loss_cfg if section == "loss" else weights, key)
        if self.unsupervised_factor is not None:
            w *= 1.0 if supervised else getattr(loss_cfg, self.unsupervised_factor)
        return w


def _colour(loss: "DistractionAwareLoss", b: _Batch) -> torch.Tensor:
    ref = b.t if b.t is not None else _image_like("input01", b.input01, b.e)
    return colour_consistency_loss(b.e, ref, loss.circular_hue)


def _color_diversity(loss: "DistractionAwareLoss", b: _Batch) -> torch.Tensor:
    if loss.legacy_diversity:
        return legacy_color_diversity_loss(b.e, loss.target_saturation)
    return color_diversity_loss(b.e)


def _curve_penalty(loss: "DistractionAwareLoss", b: _Batch) -> torch.Tensor | None:
    curves = b.out.get("curves")
    return (None if curves is None
            else curve_penalty(curves.float(), loss.loss_cfg.curve_penalty_threshold))


def _affine_decay(loss: "DistractionAwareLoss", b: _Batch) -> torch.Tensor | None:
    return affine_decay_loss(loss._colour_head[0].weight) if loss._colour_head else None


def _mask_mean(loss: "DistractionAwareLoss", b: _Batch) -> torch.Tensor | None:
    mask = b.out.get("mask")
    return mask_mean_loss(mask.float()) if mask is not None and mask.requires_grad else None


# §3.2, in the reference's order (the order of ``terms`` and of the sum)
TERMS: tuple[Term, ...] = (
    Term(TERM_RECONSTRUCTION, "w_reconstruction", False,
         lambda loss, b: b.e.new_zeros(()) if b.t is None else reconstruction_l1(b.e, b.t)),
    Term(TERM_EXPOSURE, "w_exposure", False,
         lambda loss, b: exposure_loss(b.e, loss.loss_cfg.exposure_level)),
    Term(TERM_CURVE_PENALTY, "loss.curve_penalty_weight", False, _curve_penalty),
    Term(TERM_EDGE, "w_edge", True, lambda loss, b: edge_loss(b.e, b.t)),
    Term(TERM_SSIM, "w_ssim", True, lambda loss, b: ssim_loss(b.e, b.t)),
    Term(TERM_COLOUR, "w_color_consistency", False, _colour,
         unsupervised_factor="unsupervised_colour_factor"),
    Term(TERM_COLOR_DIVERSITY, "w_color_diversity", False, _color_diversity),
    Term(TERM_PERCEPTUAL, "w_perceptual", True,
         lambda loss, b: None if loss.vgg is None else perceptual_distance(loss.vgg, b.e, b.t)),
    Term(TERM_AFFINE_DECAY, "loss.w_affine_decay", False, _affine_decay),
    Term(TERM_MASK_MEAN, "w_mask_mean", False, _mask_mean),
)


class DistractionAwareLoss(StageLoss):
    """§3.2 ``SimplifiedDistractionAwareLoss``: the weighted sum of the :data:`TERMS`.

    Without a target (unsupervised): reconstruction is the constant 0, edge/SSIM/perceptual are absent,
    and the colour term uses the input I as its reference with its weight multiplied by
    ``loss.unsupervised_colour_factor``.
    """

    def __init__(self, stage: int, weights: StageWeights, loss_cfg: LossConfig, target_saturation: float,
                 *, legacy_diversity: bool, circular_hue: bool, vgg: VGG19Features | None,
                 colour_head: nn.Module | None, clamp_bound: float | None):
        super().__init__(stage, weights, clamp_bound)
        self.loss_cfg = loss_cfg
        self.target_saturation = target_saturation
        self.legacy_diversity = legacy_diversity
        self.circular_hue = circular_hue
        self.vgg = vgg
        # Held in a tuple so nn.Module does not register the model's block as a child of the loss
        # (its parameters must stay the model's, not appear in the loss's parameters or state_dict).
        self._colour_head = () if colour_head is None else (colour_head,)

    def forward(self, out: dict, target: torch.Tensor | None, input01: torch.Tensor) -> LossOutput:
        e = _clamp01(out["enhanced"])
        t = None if target is None else _image_like("target", target, e)
        batch = _Batch(out, e, t, input01)
        terms: dict[str, torch.Tensor] = {}
        raw: dict[str, torch.Tensor] = {}
        for term in TERMS:
            weight = term.weight(self.weights, self.loss_cfg, t is not None)
            if weight <= 0 or (term.needs_target and t is None):
                continue
            value = term.fn(self, batch)
            if value is not None:
                terms[term.name] = weight * value
                raw[term.name] = value.detach()
        return self._finish(terms, raw, e)


def build_stage_loss(stage: int, cfg: Config, fixes: FixSet, model: nn.Module | None = None) -> StageLoss:
    """The criterion of ``stage`` (1, 2 or 3) under ``cfg`` and ``fixes``.

    ``model`` is needed only for the correction ``affine_decay`` (the loss reads
    ``model.colour_head.weight`` on every call). Moving the model to a device does not move the loss:
    call ``.to(device)`` on the returned loss too (it may hold the perceptual VGG).
    """
    weights = dataclasses.replace(cfg.stage_weights(stage))
    unclamped = fixes.corrects(NO_LOSS_CLAMP)
    if stage == 1 and not fixes.corrects(STAGE1_WEIGHTS):
        return SimpleReconstructionLoss(weights, cfg.loss.stage1_l1, cfg.loss.stage1_mse,
                                        None if unclamped else SIMPLE_LOSS_CLAMP)
    inactive: dict[str, str] = {}

    vgg = None
    if fixes.corrects(PERCEPTUAL_LOSS) and cfg.loss.perceptual_weights:
        vgg = load_vgg19_features(cfg.loss.perceptual_weights)
    elif weights.w_perceptual > 0:
        if fixes.corrects(PERCEPTUAL_LOSS):
            inactive[TERM_PERCEPTUAL] = ("correction perceptual_loss is on but "
                                         "loss.perceptual_weights is empty; no random VGG is used")
            _note_off(TERM_PERCEPTUAL, inactive[TERM_PERCEPTUAL])
        else:
            inactive[TERM_PERCEPTUAL] = ("never enabled in the reference (correction "
                                         "perceptual_loss off)")

    colour_head = None
    if fixes.corrects(AFFINE_DECAY):
        if model is None:
            raise ValueError("build_stage_loss: correction affine_decay needs the model "
                             "(it decays model.colour_head.weight)")
        colour_head = model.colour_head
        if colour_head is None and cfg.loss.w_affine_decay > 0:
            inactive[TERM_AFFINE_DECAY] = "the model has no colour_head (model.disable_color_affine)"
            _note_off(TERM_AFFINE_DECAY, inactive[TERM_AFFINE_DECAY])
    elif cfg.loss.w_affine_decay > 0:
        inactive[TERM_AFFINE_DECAY] = "dead in the reference (correction affine_decay off)"

    loss = DistractionAwareLoss(
        stage, weights, cfg.loss, cfg.color_thresholds.target_saturation,
        legacy_diversity=not fixes.on(COLOR_DIVERSITY_LOSS_FORMULA),
        circular_hue=fixes.corrects(CIRCULAR_HUE), vgg=vgg, colour_head=colour_head,
        clamp_bound=None if unclamped else cfg.loss.total_clamp)
    loss.inactive = inactive
    return loss
