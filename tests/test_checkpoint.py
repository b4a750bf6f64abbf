import os
import random
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch

from remdinet.checkpoint import (CheckpointError, load_checkpoint, load_model, rng_state,
                                 save_checkpoint, set_rng_state)
from remdinet.train import Trainer
from train_helpers import Stop, StopAfter, quiet_data, train_config


@pytest.fixture(scope="module")
def synthetic_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("synthetic")


@pytest.fixture(scope="module")
def trained(synthetic_dir, tmp_path_factory):
    """A trainer stopped after its first epoch, and the folder of its checkpoints."""
    cfg = train_config(synthetic_dir)
    trainer = Trainer(cfg, data=quiet_data(cfg), callbacks=[StopAfter(0)], quiet=True,
                      run_dir=tmp_path_factory.mktemp("run"))
    with pytest.raises(Stop):
        trainer.fit()
    return trainer


def _draws():
    return random.random(), float(np.random.rand()), float(torch.rand(()))


def test_rng_state_round_trip_replays_python_numpy_and_torch_draws():
    state = rng_state()
    first = _draws()
    set_rng_state(state)
    assert _draws() == first


def minimal_payload() -> dict:
    payload = {k: {} for k in ("config", "model", "optimizer", "scheduler", "trainer", "selection", "rng")}
    payload.update(scaler=None, history=[])
    return payload


def test_save_writes_atomically_and_overwrites(tmp_path):
    payload = minimal_payload()
    path = save_checkpoint(tmp_path / "last.pth", {**payload, "history": [{"epoch": 0}]})
    save_checkpoint(path, {**payload, "history": [{"epoch": 0}, {"epoch": 1}]})
    assert [p.name for p in tmp_path.iterdir()] == ["last.pth"]
    assert len(load_checkpoint(path)["history"]) == 2


def test_save_removes_the_temporary_files_of_dead_processes_of_this_host_only(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    host = socket.gethostname()
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    killed = folder / f".last.pth.tmp-{host}-{dead}"  # what kill -9 mid-write leaves
    killed.write_bytes(b"half a checkpoint")
    kept = [folder / f".best.pth.tmp-{host}-{os.getppid()}",  # a live writer's
            folder / f".last.pth.tmp-another-host-{dead}",  # a shared folder: not this host's
            folder / "notes.tmp-1"]  # not the pattern
    for path in kept:
        path.write_bytes(b"x")
    outside = tmp_path / f".last.pth.tmp-{host}-{dead}"
    outside.write_bytes(b"x")
    save_checkpoint(folder / "last.pth", minimal_payload())
    assert not killed.exists()
    assert all(path.exists() for path in kept) and outside.exists()
    assert (folder / "last.pth").is_file()


def test_save_refuses_a_payload_without_the_full_state(tmp_path):
    with pytest.raises(CheckpointError, match="rng"):
        save_checkpoint(tmp_path / "x.pth", {"model": {}})


def test_load_rejects_missing_and_foreign_files(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "absent.pth")
    torch.save({"model_state_dict": {}}, tmp_path / "foreign.pth")
    with pytest.raises(CheckpointError, match="not a remdinet checkpoint"):
        load_checkpoint(tmp_path / "foreign.pth")


def test_checkpoint_holds_the_full_training_state(trained):
    payload = load_checkpoint(trained.checkpoint_dir / "last.pth")
    t = payload["trainer"]
    assert t["epoch"] == 0 and t["stage"] == 1 and t["old_stage"] is None
    assert t["mask_forward_calls"] == trained.model.mask_predictor.forward_calls > 0
    assert payload["scheduler"]["type"] == "plateau"
    assert set(payload["rng"]) == {"python", "numpy", "torch", "cuda"}
    assert payload["config"] == trained.cfg.to_flat()
    assert len(payload["history"]) == 1 and payload["selection"]["best_s1_psnr"] > 0
    assert set(t["criteria_weights"]) == {1, 2, 3}


def test_load_model_gives_the_trained_weights_in_eval_mode_with_the_config(trained):
    model, cfg = load_model(trained.checkpoint_dir / "last.pth")
    assert not model.training
    assert cfg.to_flat() == trained.cfg.to_flat()
    expected = trained.model.state_dict()
    assert all(torch.equal(v, expected[k]) for k, v in model.state_dict().items())
    assert model.mask_predictor.forward_calls == trained.model.mask_predictor.forward_calls


def test_resume_with_a_different_config_is_refused_naming_the_keys(trained, synthetic_dir):
    cfg = train_config(synthetic_dir, {"optim.lr_curve": 1e-3})
    trainer = Trainer(cfg, data=trained.data, quiet=True)
    with pytest.raises(CheckpointError, match="optim.lr_curve"):
        trainer.fit(resume=trained.checkpoint_dir / "last.pth")
