import numpy as np
import pytest
import torch

from remdinet.colour import luma
from remdinet.data.augment import (REFERENCE, AugmentParams, adjust_brightness, adjust_contrast,
                                   adjust_hue, adjust_saturation, augment_pair, poisson_gaussian,
                                   random_resized_crop_box, rotate)

GEOMETRY_ONLY = AugmentParams(brightness=(1.0, 1.0), contrast=(1.0, 1.0), saturation=(1.0, 1.0),
                              hue_shift=0.0, gamma_p=0.0, wb_p=0.0, noise_p=0.0)


@pytest.mark.parametrize("seed", range(5))
def test_lol_shaped_images_always_get_the_centre_crop_fallback(seed):
    # §6.3: 600x400 is outside the aspect range, so every draw fails -> 420x400 at left 90
    box = random_resized_crop_box(400, 600, np.random.default_rng(seed), (0.95, 1.0), (0.95, 1.05))
    assert box == (0, 90, 400, 420)


def test_tall_images_fall_back_to_a_centre_crop_clamped_to_the_aspect_range():
    box = random_resized_crop_box(600, 400, np.random.default_rng(0), (0.95, 1.0), (0.95, 1.05))
    assert box == ((600 - 421) // 2, 0, 421, 400)  # h = round(400 / 0.95)


@pytest.mark.parametrize("seed", range(5))
def test_square_images_get_a_random_crop_within_scale_and_ratio(seed):
    top, left, h, w = random_resized_crop_box(100, 100, np.random.default_rng(seed),
                                              (0.95, 1.0), (0.95, 1.05))
    assert 0.94 <= h * w / 10000 <= 1.0 and 0.94 <= w / h <= 1.06
    assert 0 <= top <= 100 - h and 0 <= left <= 100 - w


@pytest.mark.parametrize("seed", range(12))
def test_geometry_is_shared_so_an_identical_pair_stays_identical(seed):
    img = torch.rand(3, 30, 40, generator=torch.Generator().manual_seed(seed))
    inp, tgt = augment_pair(img, img.clone(), 16, np.random.default_rng(seed), GEOMETRY_ONLY)
    assert inp.shape == tgt.shape == (3, 16, 16)
    assert torch.equal(inp, tgt)


def _centroid(x):
    y = luma(x[None])[0, 0]
    w = (y > 0.5 * y.max()).float() * y
    rows, cols = torch.meshgrid(torch.arange(y.shape[0]), torch.arange(y.shape[1]), indexing="ij")
    return float((w * rows).sum() / w.sum()), float((w * cols).sum() / w.sum())


@pytest.mark.parametrize("seed", range(12))
def test_full_reference_augmentation_keeps_a_marker_at_the_same_place(seed):
    img = torch.zeros(3, 40, 40)
    img[:, 6:10, 25:29] = 1.0  # a white marker off the centre, so flips and rotations move it
    inp, tgt = augment_pair(img, img.clone(), 20, np.random.default_rng(seed), REFERENCE)
    (r_in, c_in), (r_gt, c_gt) = _centroid(inp), _centroid(tgt)
    assert abs(r_in - r_gt) < 0.5 and abs(c_in - c_gt) < 0.5


def test_the_marker_moves_across_seeds():
    img = torch.zeros(3, 40, 40)
    img[:, 6:10, 25:29] = 1.0
    places = {tuple(round(v) for v in _centroid(augment_pair(img, None, 20,
                                                             np.random.default_rng(s))[0]))
              for s in range(12)}
    assert len(places) >= 3  # flips and 90-degree turns really happen


def test_photometric_steps_change_the_input_only():
    img = torch.rand(3, 24, 24, generator=torch.Generator().manual_seed(0))
    changed = 0
    for seed in range(6):
        inp, tgt = augment_pair(img, img.clone(), 24, np.random.default_rng(seed), REFERENCE)
        ref, ref_t = augment_pair(img, img.clone(), 24, np.random.default_rng(seed), GEOMETRY_ONLY)
        assert torch.equal(tgt, ref_t)  # the target saw exactly the geometry-only pipeline
        changed += int(not torch.allclose(inp, ref))
    assert changed == 6


def test_same_generator_seed_gives_the_same_augmentation():
    img = torch.rand(3, 20, 30, generator=torch.Generator().manual_seed(1))
    a = augment_pair(img, img, 16, np.random.default_rng(7))
    b = augment_pair(img, img, 16, np.random.default_rng(7))
    c = augment_pair(img, img, 16, np.random.default_rng(8))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and not torch.equal(a[0], c[0])


def test_unpaired_input_is_augmented_alone():
    inp, tgt = augment_pair(torch.rand(3, 20, 20), None, 8, np.random.default_rng(0))
    assert tgt is None and inp.shape == (3, 8, 8) and 0 <= inp.min() and inp.max() <= 1


def test_pair_of_different_sizes_is_rejected():
    with pytest.raises(ValueError, match="differ in size"):
        augment_pair(torch.rand(3, 20, 20), torch.rand(3, 20, 21), 8, np.random.default_rng(0))


def test_rotation_by_90_degrees_is_counter_clockwise_like_torchvision():
    x = torch.rand(3, 8, 8, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(rotate(x, 90.0), torch.rot90(x, 1, dims=(1, 2)), atol=1e-5, rtol=0)


def test_rotation_fills_black_outside_the_image():
    out = rotate(torch.ones(3, 16, 16), 45.0)
    assert out[:, 0, 0].max() == 0 and out[:, 8, 8].min() > 0.99


def test_brightness_scales_and_clamps():
    x = torch.tensor([0.2, 0.6, 0.9]).view(3, 1, 1)
    torch.testing.assert_close(adjust_brightness(x, 1.5).flatten(), torch.tensor([0.3, 0.9, 1.0]))


def test_contrast_zero_gives_the_mean_grey_and_one_is_identity():
    x = torch.rand(3, 5, 5, generator=torch.Generator().manual_seed(3))
    flat = adjust_contrast(x, 0.0)
    torch.testing.assert_close(flat, torch.full_like(x, float(luma(x[None]).mean())))
    torch.testing.assert_close(adjust_contrast(x, 1.0), x)


def test_saturation_zero_gives_per_pixel_grey():
    x = torch.rand(3, 5, 5, generator=torch.Generator().manual_seed(4))
    grey = adjust_saturation(x, 0.0)
    torch.testing.assert_close(grey, luma(x[None])[0].expand(3, -1, -1))


def test_hue_shift_of_a_third_turns_red_into_green_and_zero_is_identity():
    red = torch.tensor([0.8, 0.1, 0.1]).view(3, 1, 1)
    torch.testing.assert_close(adjust_hue(red, 1 / 3).flatten(), torch.tensor([0.1, 0.8, 0.1]),
                               atol=1e-5, rtol=0)
    x = torch.rand(3, 6, 6, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(adjust_hue(x, 0.0), x, atol=1e-5, rtol=0)


def test_poisson_gaussian_noise_is_zero_mean():
    x = torch.full((3, 64, 64), 0.5)
    noisy = poisson_gaussian(x, np.random.default_rng(0), 0.01, 255.0)
    assert abs(float(noisy.mean()) - 0.5) < 2e-3 and float(noisy.std()) > 0.02
