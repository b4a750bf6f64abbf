import math

import pytest
import torch
from torch.optim.lr_scheduler import CosineAnnealingLR
from tqdm.auto import tqdm

from remdinet.checkpoint import load_checkpoint
from remdinet.colour import denormalize
from remdinet.data import collate
from remdinet.losses import LossOutput
from remdinet.metrics import psnr, ssim
from remdinet.train import Callback, Trainer, TrainResult
from remdinet.training.optim import group_lr
from train_helpers import (STAGES, UNFREEZE_EPOCH, VALIDATION_EPOCHS, Stop, StopAfter, quiet_data,
                           train_config, without_timing)

DOCUMENTED_KEYS = {"train_loss", "train_psnr", "val_psnr", "val_ssim", "val_saturation", "lr/curve",
                   "lr/mask", "lr/other", "stage", "mix_factor", "skipped_batches", "epoch_seconds",
                   "images_per_second"}


@pytest.fixture(scope="module")
def synthetic_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("synthetic")


@pytest.fixture(scope="module")
def data(synthetic_dir):
    return quiet_data(train_config(synthetic_dir))


class Recorder(Callback):
    def __init__(self):
        self.events = []
        self.metrics = {}
        self.mask_trainable = {}
        self.mask_weights = {}
        self.lr_after_epoch = {}

    def on_train_start(self, trainer):
        self.events.append(("train_start",))

    def on_stage_start(self, trainer, stage, epoch):
        self.events.append(("stage_start", stage, epoch))

    def on_epoch_end(self, trainer, epoch, stage, metrics):
        self.events.append(("epoch_end", epoch, stage))
        self.metrics[epoch] = metrics
        mask = trainer.model.mask_predictor
        self.mask_trainable[epoch] = all(p.requires_grad for p in mask.parameters())
        self.mask_weights[epoch] = [p.detach().clone() for p in mask.parameters()]
        self.lr_after_epoch[epoch] = {g: group_lr(trainer.optimizer, g) for g in ("curve", "mask")}

    def on_checkpoint(self, trainer, path, epoch):
        self.events.append(("checkpoint", path.name, epoch))

    def on_train_end(self, trainer, result):
        self.events.append(("train_end", result.epochs_run))


@pytest.fixture(scope="module")
def baseline(synthetic_dir, data, tmp_path_factory):
    """One uninterrupted 6-epoch run of the post-fix profile, shared by the tests below."""
    cfg = train_config(synthetic_dir)
    recorder = Recorder()
    trainer = Trainer(cfg, data=data, callbacks=[recorder], quiet=True,
                      run_dir=tmp_path_factory.mktemp("baseline"))
    return trainer, trainer.fit(), recorder


def test_fit_passes_through_all_three_stages(baseline):
    trainer, result, _ = baseline
    assert isinstance(result, TrainResult)
    assert [h["stage"] for h in result.history] == STAGES
    assert result.epochs_run == 6 and not result.stopped_early
    assert isinstance(trainer.scheduler, CosineAnnealingLR)
    assert result.data_info.counts.train == len(trainer.data.train)


def test_validation_metrics_appear_on_validation_epochs_only(baseline):
    _, result, _ = baseline
    assert [h["epoch"] for h in result.history if "val_psnr" in h] == VALIDATION_EPOCHS
    assert all("val_ms_ssim" not in h for h in result.history)  # 48-px images are too small
    assert result.final_metrics["epoch"] == 5
    assert result.best_val_psnr == max(h["val_psnr"] for h in result.history if "val_psnr" in h)


def test_on_epoch_end_receives_the_documented_metric_keys(baseline):
    _, _, recorder = baseline
    for epoch in VALIDATION_EPOCHS:
        metrics = recorder.metrics[epoch]
        assert DOCUMENTED_KEYS <= set(metrics)
        assert any(k.startswith("loss/") for k in metrics)
        assert all(math.isfinite(v) for v in metrics.values())


def test_callbacks_see_stage_starts_checkpoints_and_the_end_in_order(baseline):
    _, _, recorder = baseline
    ev = recorder.events
    assert ev[0] == ("train_start",) and ev[-1] == ("train_end", 6)
    assert [e for e in ev if e[0] == "stage_start"] == [("stage_start", 1, 0), ("stage_start", 2, 2),
                                                         ("stage_start", 3, 4)]
    assert [e[1] for e in ev if e[0] == "epoch_end"] == list(range(6))
    assert [e[2] for e in ev if e[:2] == ("checkpoint", "last.pth")] == list(range(6))
    # checkpoints of an epoch are announced before its on_epoch_end
    assert ev.index(("checkpoint", "last.pth", 3)) < ev.index(("epoch_end", 3, 2))


def test_checkpoint_files_of_a_full_run(baseline):
    trainer, result, _ = baseline
    names = {p.name for p in trainer.checkpoint_dir.iterdir()}
    assert names == {"last.pth", "best_s1.pth", "best_model.pth", "checkpoint_epoch_2.pth",
                     "checkpoint_epoch_4.pth", "final_model.pth"}
    assert result.best_checkpoint == trainer.checkpoint_dir / "best_model.pth"
    assert load_checkpoint(trainer.checkpoint_dir / "last.pth")["trainer"]["epoch"] == 5
    assert (result.run_dir / "config.toml").is_file()


def test_fix_on_unfreezes_the_mask_once_at_the_configured_stage_two_epoch(baseline):
    trainer, result, recorder = baseline
    cfg = trainer.cfg
    assert [recorder.mask_trainable[e] for e in range(6)] == [True, True, False, True, True, True]
    assert result.history[UNFREEZE_EPOCH]["lr/mask"] == cfg.optim.mask_unfreeze_lr
    frozen_epoch = UNFREEZE_EPOCH - 1
    assert all(torch.equal(a, b) for a, b in zip(recorder.mask_weights[frozen_epoch - 1],
                                                 recorder.mask_weights[frozen_epoch]))
    assert not all(torch.equal(a, b) for a, b in zip(recorder.mask_weights[frozen_epoch],
                                                     recorder.mask_weights[UNFREEZE_EPOCH]))


def test_stage_transitions_mix_in_the_old_criterion_for_the_configured_epochs(baseline):
    _, result, _ = baseline
    h = result.history
    assert [x["mix_factor"] for x in h] == [1.0, 1.0, 0.0, 1.0, 0.0, 1.0]
    assert "loss/mse" in h[2]  # the stage-1 criterion's term, mixed into the first stage-2 epoch
    assert "loss/mse" not in h[3]


def test_cosine_scheduler_steps_on_validation_epochs_only(baseline):
    _, result, recorder = baseline
    h = result.history
    # epoch 3 does not validate, so the LR it ends with is still the LR epoch 4 starts with
    assert recorder.lr_after_epoch[3]["curve"] == h[3]["lr/curve"] == h[4]["lr/curve"]
    assert h[3]["lr/curve"] < h[2]["lr/curve"]  # epoch 2 validated and stepped the new cosine


def test_resume_after_an_interrupted_epoch_reproduces_the_uninterrupted_run(
        baseline, synthetic_dir, data, tmp_path):
    trainer, result, _ = baseline
    cfg = train_config(synthetic_dir)
    interrupted = Trainer(cfg, data=data, callbacks=[StopAfter(2)], quiet=True, run_dir=tmp_path)
    with pytest.raises(Stop):
        interrupted.fit()
    last = tmp_path / "checkpoints" / "last.pth"
    assert load_checkpoint(last)["trainer"]["epoch"] == 2  # written before the callback raised

    resumed = Trainer(cfg, data=data, quiet=True).fit(resume=last)
    assert resumed.run_dir == tmp_path
    assert without_timing(resumed.history) == without_timing(result.history)
    final = load_checkpoint(tmp_path / "checkpoints" / "final_model.pth")["model"]
    expected = load_checkpoint(trainer.checkpoint_dir / "final_model.pth")["model"]
    assert all(torch.equal(final[k], expected[k]) for k in expected)


def test_two_runs_with_the_same_seed_give_identical_metrics(baseline, synthetic_dir, tmp_path):
    _, result, _ = baseline
    cfg = train_config(synthetic_dir)
    again = Trainer(cfg, callbacks=[StopAfter(1)], quiet=True, run_dir=tmp_path)  # builds its own data
    with pytest.raises(Stop):
        again.fit()
    assert without_timing(again.history) == without_timing(result.history[:2])


def test_pre_fix_profile_collapses_the_mask_lr_on_every_batch_of_the_unfreeze_epoch(
        synthetic_dir, data, tmp_path):
    cfg = train_config(synthetic_dir, {"fixes.profile": "pre_fix"})
    recorder = Recorder()
    trainer = Trainer(cfg, data=data, callbacks=[recorder, StopAfter(UNFREEZE_EPOCH)], quiet=True,
                      run_dir=tmp_path)
    with pytest.raises(Stop):
        trainer.fit()
    batches = cfg.training.max_train_batches
    lr0 = recorder.lr_after_epoch[UNFREEZE_EPOCH - 1]["mask"]
    assert trainer.history[UNFREEZE_EPOCH - 1]["lr/mask"] == cfg.optim.lr_mask
    assert trainer.history[UNFREEZE_EPOCH]["lr/mask"] == pytest.approx(lr0 * 0.1 ** batches, rel=1e-9)
    assert recorder.mask_trainable[UNFREEZE_EPOCH - 1] is False
    assert recorder.mask_trainable[UNFREEZE_EPOCH] is True


def _stage_two_trainer(synthetic_dir, data, tmp_path, old_stage):
    cfg = train_config(synthetic_dir, {"fixes.disable": ["mask_unfreeze.unfreeze"]})
    trainer = Trainer(cfg, data=data, quiet=True, run_dir=tmp_path)
    trainer._update_stage(2)
    trainer.old_stage = old_stage
    return trainer


def test_fix_off_lr_collapse_needs_an_old_criterion(synthetic_dir, data, tmp_path):
    batch = collate([data.train[0], data.train[1]])
    for old_stage, factor in ((None, 1.0), (1, 0.1)):
        trainer = _stage_two_trainer(synthetic_dir, data, tmp_path, old_stage)
        before = group_lr(trainer.optimizer, "mask")
        out = trainer.model(batch["input"])
        trainer._batch_loss(out, batch["target"], denormalize(batch["input"]), epoch=UNFREEZE_EPOCH)
        assert group_lr(trainer.optimizer, "mask") == pytest.approx(before * factor)


class NaNOnCall:
    """Forward hook on a loss that replaces the total of its ``n``-th call with NaN."""

    def __init__(self, n):
        self.n, self.calls = n, 0

    def __call__(self, module, args, output):
        self.calls += 1
        if self.calls == self.n:
            return LossOutput(output.total * math.nan, output.terms, output.raw)
        return output


def test_non_finite_loss_skips_the_batch_and_counts_it(synthetic_dir, data, tmp_path):
    cfg = train_config(synthetic_dir)
    trainer = Trainer(cfg, data=data, callbacks=[StopAfter(0)], quiet=True, run_dir=tmp_path)
    trainer.criteria[1].register_forward_hook(NaNOnCall(2))
    with pytest.raises(Stop):
        trainer.fit()
    first = trainer.history[0]
    assert first["skipped_batches"] == 1 and trainer.skipped_batches == 1
    assert math.isfinite(first["train_loss"]) and math.isfinite(first["train_psnr"])


def _nan_first_validation_output(trainer):
    state = {"done": False}

    def hook(module, args, output):
        if module.training or state["done"]:
            return output
        state["done"] = True
        return {**output, "enhanced": output["enhanced"] * math.nan}

    trainer.model.register_forward_hook(hook)


def test_val_nan_guard_on_skips_and_counts_the_non_finite_batch(synthetic_dir, data, tmp_path):
    trainer = Trainer(train_config(synthetic_dir), data=data, callbacks=[StopAfter(0)], quiet=True,
                      run_dir=tmp_path)
    _nan_first_validation_output(trainer)
    with pytest.raises(Stop):
        trainer.fit()
    first = trainer.history[0]
    assert first["val_skipped_batches"] == 1
    assert math.isfinite(first["val_psnr"]) and math.isfinite(first["val_ssim"])


def test_val_nan_guard_off_lets_nan_reach_the_epoch_means(synthetic_dir, data, tmp_path):
    cfg = train_config(synthetic_dir, {"fixes.disable": ["mask_unfreeze.val_nan_guard"]})
    trainer = Trainer(cfg, data=data, callbacks=[StopAfter(0)], quiet=True, run_dir=tmp_path)
    _nan_first_validation_output(trainer)
    with pytest.raises(Stop):
        trainer.fit()
    assert math.isnan(trainer.history[0]["val_psnr"])
    assert trainer.history[0]["val_skipped_batches"] == 0


def test_val_nan_guard_with_no_finite_batch_left_gives_nan_metrics_and_a_log_line(
        synthetic_dir, data, tmp_path, logged):
    trainer = Trainer(train_config(synthetic_dir), data=data, callbacks=[StopAfter(0)],
                      quiet=True, run_dir=tmp_path)

    def every_validation_output_nan(module, args, output):
        return output if module.training else {**output, "enhanced": output["enhanced"] * math.nan}

    trainer.model.register_forward_hook(every_validation_output_nan)
    with pytest.raises(Stop):
        trainer.fit()
    first = trainer.history[0]
    batches = first["val_skipped_batches"]
    assert batches >= 1
    for key in ("val_psnr", "val_ssim", "val_saturation", "val_adjusted_psnr"):
        assert math.isnan(first[key]), key  # not the reference's 0, which passes for a poor model
    assert any(f"validation: {batches} of {batches} batch(es) had non-finite metrics" in m
               and "NaN" in m for m in logged.messages), logged.messages


def test_one_non_finite_validation_batch_is_counted_in_a_log_line(synthetic_dir, data, tmp_path,
                                                                  logged):
    trainer = Trainer(train_config(synthetic_dir), data=data, callbacks=[StopAfter(0)],
                      quiet=True, run_dir=tmp_path)
    _nan_first_validation_output(trainer)
    with pytest.raises(Stop):
        trainer.fit()
    assert any("validation: 1 of " in m and "left out" in m and "NaN" not in m for m in logged.messages)


def _count_steps(trainer):
    steps = []
    trainer.optimizer.register_step_post_hook(lambda opt, args, kwargs: steps.append(1))
    return steps


@pytest.mark.parametrize("overrides,expected", [
    # 5 batches: steps after batches 2 and 4, then the remainder
    ({"training.accum_batches": 2, "training.max_train_batches": 0}, 3),
    ({"training.max_train_batches": 2}, 2),
])
def test_optimiser_steps_follow_accumulation_and_the_batch_cap(synthetic_dir, data, tmp_path,
                                                               overrides, expected):
    trainer = Trainer(train_config(synthetic_dir, overrides), data=data, callbacks=[StopAfter(0)],
                      quiet=True, run_dir=tmp_path)
    assert len(trainer.train_loader) == 5
    steps = _count_steps(trainer)
    with pytest.raises(Stop):
        trainer.fit()
    assert len(steps) == expected


def test_an_exception_in_a_callback_propagates_with_progress_bars_closed(synthetic_dir, data, tmp_path):
    trainer = Trainer(train_config(synthetic_dir), data=data, callbacks=[StopAfter(0)], quiet=False,
                      run_dir=tmp_path)
    with pytest.raises(Stop):
        trainer.fit()
    assert len(tqdm._instances) == 0
    assert (tmp_path / "checkpoints" / "last.pth").is_file()


def test_early_stop_ends_the_whole_run(synthetic_dir, data, tmp_path):
    cfg = train_config(synthetic_dir, {"early_stopping.stage2_patience": 1,
                                       "early_stopping.stage2_min_delta": 100.0})
    result = Trainer(cfg, data=data, quiet=True, run_dir=tmp_path).fit()
    assert result.stopped_early and result.epochs_run == 3  # the first stage-2 validation at epoch 2
    assert result.best_checkpoint == tmp_path / "checkpoints" / "final_model.pth"
    assert result.best_checkpoint.is_file()


@pytest.mark.slow
def test_validation_psnr_rises_well_above_the_identity_with_the_corrected_profile(synthetic_dir, data,
                                                                                  tmp_path):
    # Budget: 6 epochs x 3 batches of 2 images (48 px), every LR 1e-2 (the reference LRs move the
    # tiny model too little in 18 steps). Measured: identity 8.75 dB, epoch 0 11.24, epoch 5 17.23.
    lrs = {"optim.lr_curve": 1e-2, "optim.lr_mask": 1e-2, "optim.lr_other": 1e-2}
    cfg = train_config(synthetic_dir, {"fixes.profile": "corrected", **lrs})
    trainer = Trainer(cfg, data=data, quiet=True, run_dir=tmp_path)
    result = trainer.fit()
    batches = list(trainer.val_loader)
    identity_psnr = torch.stack([psnr(denormalize(b["input"]), b["target"]).mean() for b in batches])
    identity_ssim = torch.stack([ssim(denormalize(b["input"]), b["target"]).mean() for b in batches])
    first = result.history[0]
    assert result.final_metrics["val_psnr"] > float(identity_psnr.mean()) + 5.0
    assert result.final_metrics["val_psnr"] > first["val_psnr"] + 3.0
    assert result.final_metrics["val_ssim"] > float(identity_ssim.mean())


def _weights_after_one_epoch(cfg, data, run_dir):
    trainer = Trainer(cfg, data=data, callbacks=[StopAfter(0)], quiet=True, run_dir=run_dir)
    initial = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    with pytest.raises(Stop):
        trainer.fit()
    return initial, trainer.model.state_dict()


def test_grad_clip_zero_turns_clipping_off_instead_of_zeroing_the_gradients(synthetic_dir, data,
                                                                            tmp_path):
    initial, off = _weights_after_one_epoch(
        train_config(synthetic_dir, {"optim.grad_clip": 0.0}), data, tmp_path / "off")
    _, loose = _weights_after_one_epoch(
        train_config(synthetic_dir, {"optim.grad_clip": 1e6}), data, tmp_path / "loose")
    name = "curve_estimator.curve_net.0.weight"
    assert not torch.equal(off[name], initial[name])
    for key in off:
        assert torch.equal(off[key], loose[key]), key
