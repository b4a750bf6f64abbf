from __future__ import annotations

import pytest
import torch

from remdinet.perceptual import VGG19Features, load_vgg19_features, perceptual_distance

CONV_INDICES = (0, 2, 5, 7, 10, 12, 14)


def test_vgg_features_use_torchvision_parameter_names_and_are_frozen():
    net = VGG19Features()
    assert set(net.state_dict()) == {f"features.{i}.{p}" for i in CONV_INDICES for p in ("weight", "bias")}
    assert not any(p.requires_grad for p in net.parameters())


def test_vgg_features_end_at_relu3_3():
    out = VGG19Features()(torch.rand(2, 3, 32, 40))
    assert out.shape == (2, 256, 8, 10)
    assert out.min() >= 0


def test_weights_round_trip_through_a_file(tmp_path):
    source = VGG19Features()
    torch.save(source.state_dict(), tmp_path / "vgg.pt")
    loaded = load_vgg19_features(tmp_path / "vgg.pt")
    x = torch.rand(1, 3, 16, 16)
    assert torch.equal(loaded(x), source(x))


def test_a_full_torchvision_style_state_dict_loads_ignoring_later_layers(tmp_path):
    state = VGG19Features().state_dict()
    state["features.16.weight"] = torch.zeros(1)
    state["features.34.bias"] = torch.zeros(1)
    state["classifier.6.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "vgg19_full.pt")
    assert isinstance(load_vgg19_features(tmp_path / "vgg19_full.pt"), VGG19Features)


def test_missing_foreign_and_absent_weights_raise_naming_the_problem(tmp_path):
    state = VGG19Features().state_dict()
    del state["features.14.bias"]
    torch.save(state, tmp_path / "partial.pt")
    with pytest.raises(KeyError, match="features.14.bias"):
        load_vgg19_features(tmp_path / "partial.pt")
    state = {**VGG19Features().state_dict(), "backbone.0.weight": torch.zeros(1)}
    torch.save(state, tmp_path / "foreign.pt")
    with pytest.raises(KeyError, match="backbone.0.weight"):
        load_vgg19_features(tmp_path / "foreign.pt")
    with pytest.raises(FileNotFoundError, match="loss.perceptual_weights"):
        load_vgg19_features(tmp_path / "nowhere.pt")


def test_perceptual_distance_is_zero_for_identical_images_and_detaches_the_target():
    vgg = VGG19Features()
    pred = torch.rand(1, 3, 16, 16, requires_grad=True)
    target = torch.rand(1, 3, 16, 16, requires_grad=True)
    assert float(perceptual_distance(vgg, target.detach(), target.detach())) == 0.0
    perceptual_distance(vgg, pred, target).backward()
    assert pred.grad.abs().sum() > 0
    assert target.grad is None
