import pytest
import torch

from data_helpers import cfg_for, remdinet_tree
from remdinet.colour import denormalize
from remdinet.data import DataError, PairedDataset, Sample, build_data, collate, make_loader


def _batches(loader, epochs=2):
    return [[(b["name"], b["input"].clone(), b["target"].clone()) for b in loader]
            for _ in range(epochs)]


def test_sample_has_normalised_input_target_and_name(tmp_path):
    remdinet_tree(tmp_path, n=3, val=1)
    bundle = build_data(cfg_for(tmp_path))
    s = bundle.train[0]
    assert set(s) == {"input", "target", "name"}
    assert s["input"].shape == s["target"].shape == (3, 16, 16)
    assert s["input"].min() < 0  # ImageNet-normalised
    assert 0 <= s["target"].min() and s["target"].max() <= 1


def test_val_squashes_to_image_size_and_input_denormalises_to_the_file(tmp_path):
    remdinet_tree(tmp_path, n=2, val=1, h=20, w=24)
    bundle = build_data(cfg_for(tmp_path, training__image_size=16))
    s = bundle.val[0]
    assert s["input"].shape == (3, 16, 16) and s["target"].shape == (3, 16, 16)
    assert float(denormalize(s["input"][None]).mean()) < float(s["target"].mean())  # the dark input


def test_val_resize_none_keeps_the_native_size(tmp_path):
    remdinet_tree(tmp_path, n=2, val=1, h=20, w=24)
    bundle = build_data(cfg_for(tmp_path, data__val_resize="none"))
    assert bundle.val[0]["input"].shape == (3, 20, 24)


def test_train_without_augmentation_is_deterministic_squash(tmp_path):
    remdinet_tree(tmp_path, n=2, val=1)
    bundle = build_data(cfg_for(tmp_path, data__augment=False))
    bundle.train.set_epoch(3)
    a = bundle.train[0]
    bundle.train.set_epoch(4)
    assert torch.equal(a["input"], bundle.train[0]["input"])


def test_augmentation_depends_on_the_epoch(tmp_path):
    remdinet_tree(tmp_path, n=2, val=1)
    ds = build_data(cfg_for(tmp_path)).train
    assert torch.equal(ds[(0, 1)]["input"], ds[(0, 1)]["input"])
    assert not torch.equal(ds[(0, 1)]["input"], ds[(1, 1)]["input"])


def test_collate_batches_unpaired_samples_with_target_none():
    batch = [{"input": torch.zeros(3, 4, 4), "target": None, "name": n} for n in "ab"]
    out = collate(batch)
    assert out["target"] is None and out["input"].shape == (2, 3, 4, 4) and out["name"] == ["a", "b"]


def test_collate_rejects_a_batch_mixing_paired_and_unpaired_samples():
    batch = [{"input": torch.zeros(3, 4, 4), "target": torch.zeros(3, 4, 4), "name": "a"},
             {"input": torch.zeros(3, 4, 4), "target": None, "name": "b"}]
    with pytest.raises(DataError, match="without ground truth: b"):
        collate(batch)


def test_collate_names_images_of_different_sizes():
    batch = [{"input": torch.zeros(3, 4, 4), "target": None, "name": "small"},
             {"input": torch.zeros(3, 4, 5), "target": None, "name": "wide"}]
    with pytest.raises(DataError, match="small.*wide"):
        collate(batch)


def test_two_loaders_with_the_same_seed_give_identical_batches(tmp_path):
    remdinet_tree(tmp_path, n=5, val=1)
    cfg = cfg_for(tmp_path)
    first = _batches(make_loader(build_data(cfg).train, cfg, train=True))
    second = _batches(make_loader(build_data(cfg).train, cfg, train=True))
    for e1, e2 in zip(first, second):
        assert [b[0] for b in e1] == [b[0] for b in e2]
        assert all(torch.equal(a[1], b[1]) and torch.equal(a[2], b[2]) for a, b in zip(e1, e2))
    # the second epoch is a new shuffle and new augmentations
    assert not all(torch.equal(a[1], b[1]) for a, b in zip(first[0], first[1]))


def test_worker_processes_do_not_change_the_batches(tmp_path):
    remdinet_tree(tmp_path, n=4, val=1)
    cfg0 = cfg_for(tmp_path)
    cfg2 = cfg_for(tmp_path, training__num_workers=2)
    a = _batches(make_loader(build_data(cfg0).train, cfg0, train=True), epochs=1)[0]
    b = _batches(make_loader(build_data(cfg2).train, cfg2, train=True), epochs=1)[0]
    assert [x[0] for x in a] == [x[0] for x in b]
    assert all(torch.equal(x[1], y[1]) for x, y in zip(a, b))


def test_sampler_set_epoch_replays_an_epoch(tmp_path):
    remdinet_tree(tmp_path, n=4, val=1)
    cfg = cfg_for(tmp_path)
    loader = make_loader(build_data(cfg).train, cfg, train=True)
    epochs = _batches(loader, epochs=2)
    loader.sampler.set_epoch(1)
    replay = _batches(loader, epochs=1)[0]
    assert all(torch.equal(x[1], y[1]) for x, y in zip(epochs[1], replay))


def test_training_loader_drops_the_ragged_last_batch_but_validation_keeps_it(tmp_path):
    remdinet_tree(tmp_path, n=3, val=3)
    cfg = cfg_for(tmp_path)  # batch size 2
    bundle = build_data(cfg)
    assert [len(b["name"]) for b in make_loader(bundle.train, cfg, train=True)] == [2]
    assert [len(b["name"]) for b in make_loader(bundle.val, cfg, train=False)] == [2, 1]


def test_validation_loader_keeps_file_order(tmp_path):
    remdinet_tree(tmp_path, n=2, val=3)
    cfg = cfg_for(tmp_path)
    loader = make_loader(build_data(cfg).val, cfg, train=False)
    assert [n for b in loader for n in b["name"]] == ["v0.png", "v1.png", "v2.png"]


def test_pairing_none_yields_batches_without_target(tmp_path):
    remdinet_tree(tmp_path, n=4)
    cfg = cfg_for(tmp_path, data__pairing="none", data__val_split=0.25)
    bundle = build_data(cfg)
    batch = next(iter(make_loader(bundle.train, cfg, train=True)))
    assert batch["target"] is None and batch["input"].shape == (2, 3, 16, 16)


def test_cached_dataset_never_rereads_files(tmp_path):
    remdinet_tree(tmp_path, n=2, val=1)
    bundle = build_data(cfg_for(tmp_path, data__cache_decoded=True))
    for f in (tmp_path / "train_data").iterdir():
        f.write_bytes(b"gone")
    assert bundle.train[0]["input"].shape == (3, 16, 16)


def test_uncached_dataset_reads_at_access_and_names_a_file_that_went_bad(tmp_path):
    remdinet_tree(tmp_path, n=2, val=1)
    bundle = build_data(cfg_for(tmp_path, data__cache_decoded=False))
    assert bundle.train.cache is None
    (tmp_path / "train_data" / bundle.train.samples[0].name).write_bytes(b"gone")
    with pytest.raises(DataError, match=bundle.train.samples[0].name):
        bundle.train[0]


def test_dataset_rejects_unknown_modes():
    with pytest.raises(ValueError, match="mode"):
        PairedDataset([], "test", 16)
    with pytest.raises(ValueError, match="val_resize"):
        PairedDataset([Sample("a", None, None)], "val", 16, val_resize="crop")
