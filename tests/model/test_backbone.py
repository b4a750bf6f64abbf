"""MobileNetV3-Large backbone: torchvision key layout, weight loading, freezing, taps."""
from __future__ import annotations

import logging

import pytest
import torch
from tiny_setup import tiny_config

from remdinet.model import BackboneWeightsError, MobileNetV3Backbone, build_model
from remdinet.model.backbone import _note_random_init

# A few keys and shapes of torchvision's mobilenet_v3_large().state_dict()
TORCHVISION_SHAPES = {
    "features.0.0.weight": (16, 3, 3, 3),
    "features.0.1.running_var": (16,),
    "features.1.block.0.0.weight": (16, 1, 3, 3),
    "features.2.block.0.0.weight": (64, 16, 1, 1),
    "features.4.block.2.fc1.weight": (24, 72, 1, 1),
    "features.4.block.2.fc2.bias": (72,),
    "features.15.block.3.1.weight": (160,),
    "features.16.0.weight": (960, 160, 1, 1),
}


def torchvision_style_state(backbone):
    """The backbone's state plus the classifier keys a full torchvision checkpoint carries."""
    state = dict(backbone.state_dict())
    state["classifier.0.weight"] = torch.zeros(1280, 960)
    state["classifier.0.bias"] = torch.zeros(1280)
    state["classifier.3.weight"] = torch.zeros(1000, 1280)
    state["classifier.3.bias"] = torch.zeros(1000)
    return state


def test_full_width_backbone_uses_torchvision_key_names_and_shapes():
    state = MobileNetV3Backbone().state_dict()
    for key, shape in TORCHVISION_SHAPES.items():
        assert tuple(state[key].shape) == shape, key


def test_full_width_backbone_matches_reference_size_and_freeze():
    bb = MobileNetV3Backbone()
    assert sum(p.numel() for p in bb.parameters()) == 2_971_952
    assert sum(p.numel() for p in bb.parameters() if not p.requires_grad) == 159_952
    assert all(not p.requires_grad for p in bb.features[:10].parameters())
    assert all(p.requires_grad for p in bb.features[10:].parameters())


def test_taps_have_true_strides_2_to_32():
    bb = MobileNetV3Backbone(width=0.1).eval()
    taps = bb(torch.randn(1, 3, 64, 96))
    assert [tuple(t.shape[-2:]) for t in taps.values()] == [(32, 48), (16, 24), (8, 12), (4, 6), (2, 3)]
    assert list(taps) == ["scale_1", "scale_2", "scale_4", "scale_8", "scale_16"]
    assert taps["scale_16"].shape[1] == bb.out_channels


@pytest.mark.parametrize("wrapped", [False, True])
def test_loads_a_torchvision_state_dict(tmp_path, wrapped):
    torch.manual_seed(1)
    source = MobileNetV3Backbone(width=0.1)
    state = torchvision_style_state(source)
    path = tmp_path / "mnv3.pth"
    torch.save({"state_dict": state} if wrapped else state, path)
    torch.manual_seed(2)
    loaded = MobileNetV3Backbone(width=0.1, weights=str(path))
    for key, value in source.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_model_config_path_reaches_the_backbone(tmp_path):
    source = MobileNetV3Backbone(width=0.1)
    path = tmp_path / "mnv3.pth"
    torch.save(torchvision_style_state(source), path)
    model = build_model(tiny_config({"model.backbone_weights": str(path)}))
    assert torch.equal(model.semantic.backbone.features[16][0].weight, source.features[16][0].weight)


def test_missing_and_unexpected_keys_raise_naming_them(tmp_path):
    state = torchvision_style_state(MobileNetV3Backbone(width=0.1))
    del state["features.3.block.1.0.weight"]
    state["features.99.weight"] = torch.zeros(1)
    path = tmp_path / "bad.pth"
    torch.save(state, path)
    with pytest.raises(BackboneWeightsError) as info:
        MobileNetV3Backbone(width=0.1, weights=str(path))
    assert "features.3.block.1.0.weight" in str(info.value)
    assert "features.99.weight" in str(info.value)


def test_shape_mismatch_raises_naming_the_key(tmp_path):
    state = MobileNetV3Backbone(width=0.1).state_dict()
    state["features.0.0.weight"] = torch.zeros(16, 3, 3, 3)
    path = tmp_path / "wide.pth"
    torch.save(state, path)
    with pytest.raises(BackboneWeightsError,
                       match=r"features\.0\.0\.weight \(file \(16, 3, 3, 3\), model \(8, 3, 3, 3\)\)"):
        MobileNetV3Backbone(width=0.1, weights=str(path))


def test_missing_weights_file_raises(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        MobileNetV3Backbone(width=0.1, weights=str(tmp_path / "nope.pth"))


def test_random_init_logs_exactly_one_line_per_process(caplog):
    _note_random_init.cache_clear()  # a backbone an earlier test built has said it already
    with caplog.at_level(logging.INFO, logger="remdinet.model"):
        MobileNetV3Backbone(width=0.1)
        MobileNetV3Backbone(width=0.1)
    records = [r for r in caplog.records if r.name == "remdinet.model"]
    assert len(records) == 1 and "randomly initialised" in records[0].getMessage()


def _frozen_bn(bb):
    return [m for m in bb.features[:10].modules() if isinstance(m, torch.nn.BatchNorm2d)]


def test_frozen_bn_eval_keeps_frozen_running_stats_fixed():
    bb = MobileNetV3Backbone(width=0.1, frozen_bn_eval=True).train()
    before = [bn.running_mean.clone() for bn in _frozen_bn(bb)]
    bb(torch.randn(2, 3, 64, 64))
    assert all(not bn.training for bn in _frozen_bn(bb))
    assert all(torch.equal(a, bn.running_mean) for a, bn in zip(before, _frozen_bn(bb)))
    assert bb.features[12].training


def test_reference_frozen_bn_statistics_drift_in_training():
    bb = MobileNetV3Backbone(width=0.1).train()
    before = _frozen_bn(bb)[0].running_mean.clone()
    bb(torch.randn(2, 3, 64, 64))
    assert not torch.equal(before, _frozen_bn(bb)[0].running_mean)


def test_frozen_bn_eval_correction_reaches_the_model():
    model = build_model(tiny_config({"fixes.corrections": ["frozen_bn_eval"]})).train()
    assert all(not bn.training for bn in _frozen_bn(model.semantic.backbone))
