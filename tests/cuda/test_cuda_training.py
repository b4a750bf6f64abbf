"""The trainer on CUDA: a 3-epoch tiny run through all three stages with the GPU feeding (auto
loader workers, pinned memory, cuDNN autotuning), and a resume that starts from exactly the
interrupted run's state.

A resumed CUDA run is not compared batch for batch with an uninterrupted one, as the CPU test does:
cuDNN's convolution backward and the bilinear upsampling backward add in a nondeterministic order,
so two uninterrupted CUDA runs already differ in the last bits. What resume owns, the state it
restores, is compared exactly.
"""
from __future__ import annotations

import copy
import math

import pytest
import torch

from cuda_helpers import CUDA
from remdinet.data import AUTO_WORKERS
from remdinet.train import Callback, Trainer
from train_helpers import Stop, StopAfter, quiet_data, train_config, without_timing

pytestmark = CUDA


@pytest.fixture(scope="module")
def synthetic_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("synthetic")


def cuda_config(synthetic_dir, precision: str):
    # 3 epochs of the trainer tests' schedule fractions: one epoch per stage
    return train_config(synthetic_dir, {"training.device": "cuda", "training.num_epochs": 3,
                                        "training.precision": precision,
                                        "training.num_workers": AUTO_WORKERS})


class Snapshot(Callback):
    """The state a run starts training from (after any resume), copied."""

    def on_train_start(self, trainer):
        self.model = {k: v.clone() for k, v in trainer.model.state_dict().items()}
        self.optimizer = copy.deepcopy(trainer.optimizer.state_dict())
        self.scaler = trainer.scaler.state_dict()
        self.cuda_rng = torch.cuda.get_rng_state()


def _equal_optimizer_states(a: dict, b: dict) -> bool:
    if a["param_groups"] != b["param_groups"] or a["state"].keys() != b["state"].keys():
        return False
    return all(torch.equal(torch.as_tensor(sa[k]).cpu(), torch.as_tensor(b["state"][i][k]).cpu())
               for i, sa in a["state"].items() for k in sa)


def test_three_epochs_train_through_every_stage_on_cuda_fed_by_pinned_persistent_workers(
        synthetic_dir, tmp_path):
    trainer = Trainer(cuda_config(synthetic_dir, "auto"), quiet=True, run_dir=tmp_path)
    result = trainer.fit()
    assert trainer.device.type == "cuda" and trainer.amp_dtype == torch.bfloat16  # auto on CUDA
    assert all(p.is_cuda for p in trainer.model.parameters())
    assert [h["stage"] for h in result.history] == [1, 2, 3]
    assert all(math.isfinite(h["train_loss"]) for h in result.history)
    assert result.skipped_batches == 0 and math.isfinite(result.best_val_psnr)
    loader = trainer.train_loader
    assert loader.num_workers > 0 and loader.pin_memory and loader.persistent_workers
    assert torch.backends.cudnn.benchmark  # fixed 48-px crops, validation squashed to them
    assert (tmp_path / "checkpoints" / "final_model.pth").is_file()


def test_a_resumed_cuda_run_starts_from_the_interrupted_runs_exact_state_and_finishes(
        synthetic_dir, tmp_path):
    # fp16: the checkpoint must also carry the gradient scaler's state
    cfg = cuda_config(synthetic_dir, "fp16")
    data = quiet_data(cfg)
    interrupted = Trainer(cfg, data=data, callbacks=[StopAfter(1)], quiet=True, run_dir=tmp_path)
    with pytest.raises(Stop):
        interrupted.fit()
    rng_at_stop = torch.cuda.get_rng_state()
    start = Snapshot()
    resumed = Trainer(cfg, data=data, callbacks=[start], quiet=True).fit(
        resume=tmp_path / "checkpoints" / "last.pth")

    model = interrupted.model.state_dict()
    assert all(start.model[k].is_cuda and torch.equal(start.model[k], model[k]) for k in model)
    assert _equal_optimizer_states(start.optimizer, interrupted.optimizer.state_dict())
    assert start.scaler == interrupted.scaler.state_dict()
    assert torch.equal(start.cuda_rng, rng_at_stop)  # the new trainer had reseeded it
    assert resumed.run_dir == tmp_path
    assert [h["epoch"] for h in resumed.history] == [0, 1, 2]
    assert without_timing(resumed.history[:2]) == without_timing(interrupted.history)
    assert resumed.history[2]["stage"] == 3 and math.isfinite(resumed.history[2]["train_loss"])
