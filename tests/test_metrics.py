from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage import data, transform
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from remdinet.metrics import MS_SSIM_MIN_SIDE, ms_ssim, psnr, ssim


def _to_torch(images: list[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float()


def _sk_ssim(a: np.ndarray, b: np.ndarray) -> float:
    return structural_similarity(a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                 data_range=1, channel_axis=-1)


def _pairs(kind: str) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Two (pred, target) image pairs as H×W×3 float arrays in [0, 1] (float32-representable)."""
    rng = np.random.default_rng(7)
    if kind == "random":
        targets = [rng.random((37, 45, 3)), rng.random((37, 45, 3))]
    else:
        targets = [transform.resize(data.astronaut(), (48, 64), anti_aliasing=True),
                   transform.resize(data.coffee(), (48, 64), anti_aliasing=True)]
    targets = [t.astype(np.float32).astype(np.float64) for t in targets]
    preds = [np.clip(t + rng.normal(0, s, t.shape), 0, 1).astype(np.float32).astype(np.float64)
             for t, s in zip(targets, (0.03, 0.12))]
    return preds, targets


@pytest.mark.parametrize("kind", ["random", "natural"])
def test_psnr_matches_skimage_per_image(kind):
    preds, targets = _pairs(kind)
    got = psnr(_to_torch(preds), _to_torch(targets))
    want = [peak_signal_noise_ratio(t, p, data_range=1) for p, t in zip(preds, targets)]
    assert got.shape == (2,)
    assert got.tolist() == pytest.approx(want, abs=1e-3)


@pytest.mark.parametrize("kind", ["random", "natural"])
def test_ssim_matches_skimage_gaussian_per_channel_mean(kind):
    preds, targets = _pairs(kind)
    got = ssim(_to_torch(preds), _to_torch(targets))
    want = [_sk_ssim(t, p) for p, t in zip(preds, targets)]
    assert got.shape == (2,)
    assert got.tolist() == pytest.approx(want, abs=1e-3)


def test_psnr_of_identical_images_is_capped_by_the_mse_floor():
    x = torch.rand(2, 3, 16, 16)
    assert psnr(x, x).tolist() == pytest.approx([100.0, 100.0])


def test_metrics_are_per_image_independent_of_the_batch():
    x, y = torch.rand(3, 3, 24, 24), torch.rand(3, 3, 24, 24)
    for metric in (psnr, ssim):
        batched = metric(x, y)
        single = torch.cat([metric(x[i:i + 1], y[i:i + 1]) for i in range(3)])
        assert torch.allclose(batched, single, atol=1e-6)


def test_ssim_and_psnr_are_differentiable():
    x = torch.rand(1, 3, 24, 24, requires_grad=True)
    y = torch.rand(1, 3, 24, 24)
    (ssim(x, y).sum() + psnr(x, y).sum()).backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_ssim_runs_in_fp32_under_bf16_autocast():
    x, y = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
    reference = ssim(x, y)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = ssim(x, y)
    assert got.dtype == torch.float32
    assert torch.allclose(got, reference, atol=1e-6)


def test_ssim_rejects_images_smaller_than_the_window():
    x = torch.rand(1, 3, 10, 32)
    with pytest.raises(ValueError, match="smaller than the 11"):
        ssim(x, x)


def test_metrics_reject_mismatched_shapes():
    with pytest.raises(ValueError, match="differ in shape"):
        psnr(torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 17))


def test_ms_ssim_of_identical_images_is_one():
    x = torch.rand(2, 3, MS_SSIM_MIN_SIDE + 1, 171)
    assert ms_ssim(x, x).tolist() == pytest.approx([1.0, 1.0], abs=1e-5)


def test_ms_ssim_decreases_monotonically_with_noise():
    gen = torch.Generator().manual_seed(3)
    img = torch.from_numpy(transform.resize(data.astronaut(), (176, 176), anti_aliasing=True))
    x = img.permute(2, 0, 1)[None].float()
    noise = torch.randn(x.shape, generator=gen)
    scores = [float(ms_ssim((x + s * noise).clamp(0, 1), x)) for s in (0.0, 0.02, 0.05, 0.1, 0.2)]
    assert all(a > b for a, b in zip(scores, scores[1:]))
    assert scores[0] == pytest.approx(1.0, abs=1e-5) and scores[-1] > 0


def test_ms_ssim_rejects_a_smaller_side_of_160_or_less():
    x = torch.rand(1, 3, MS_SSIM_MIN_SIDE, 300)
    with pytest.raises(ValueError, match="> 160"):
        ms_ssim(x, x)


def test_ms_ssim_is_differentiable():
    x = torch.rand(1, 3, 168, 168, requires_grad=True)
    y = torch.rand(1, 3, 168, 168)
    ms_ssim(x, (y * 0.5 + x.detach() * 0.5)).sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
