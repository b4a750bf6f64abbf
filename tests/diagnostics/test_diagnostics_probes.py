import torch

from diag_helpers import fake_dataset
from remdinet.colour import denormalize, hsv_saturation
from remdinet.diagnostics.probes import BAR_SATURATION, build_probes, colour_bars, mixed_batch


def test_probes_cover_every_kind_with_same_sized_batches():
    probes = build_probes(fake_dataset(2))
    assert [p.name for p in probes] == ["low_light", "well_exposed", "grey", "bright",
                                        "colour_bars"]
    for p in probes:
        assert p.x.shape == (2, 3, 64, 64) and p.target.shape == (2, 3, 64, 64)


def test_bright_probe_is_mistakable_for_an_unnormalised_image_and_grey_has_no_chroma():
    probes = {p.name: p for p in build_probes(fake_dataset(2))}
    assert float(probes["bright"].x.min()) > -0.1
    grey = denormalize(probes["grey"].x)
    assert float((grey.amax(1) - grey.amin(1)).max()) < 1e-5


def test_colour_bars_have_the_declared_saturation_and_six_hues():
    bars = colour_bars(8, 60)
    assert torch.allclose(hsv_saturation(bars[None]), torch.full((1, 1, 8, 60), BAR_SATURATION))
    assert len({tuple(bars[:, 0, x].tolist()) for x in range(60)}) == 6


def test_mixed_batch_takes_one_image_of_each_kind():
    probes = build_probes(fake_dataset(2))
    mixed = mixed_batch(probes)
    assert mixed.x.shape[0] == len(probes)
    assert torch.equal(mixed.x[3], probes[3].x[0])
