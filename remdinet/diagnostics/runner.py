"""The instrumented training slice: the real :class:`~remdinet.train.Trainer` with a diagnostics
callback, on a compressed schedule that places every stage behaviour inside a few batches.

The slice (:data:`SLICE`, applied over the run's config; ``--set`` still wins):

=====  =========================  ==================================================================
epoch  stage (epoch in stage)     what happens
=====  =========================  ==================================================================
0      1 (0)                      stage-1 loss; all but the frozen backbone layers trainable
1      2 (0)                      stage switch: mask frozen, mix factor 0, ramp factor 0
2      2 (1)                      mask unfreeze (a per-batch LR multiply without mask_unfreeze)
3      2 (2)                      mix and ramp complete
4      3 (0)                      stage switch, mix factor 0, perceptual warm-up 0
5      3 (1)                      stage-3 criterion alone
=====  =========================  ==================================================================

Three training batches per epoch (fewer when the training set has fewer full batches), 64-px crops,
one validation batch per epoch, early stopping off (so the slice always covers all three stages).
The probes (:mod:`.probes`) run on copies of the model: the loss terms at the end of each stage,
the train/eval and control-flow checks at the end of the slice.
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

import torch

from remdinet.config import Config, ConfigError, apply_overrides
from remdinet.data import DataBundle, build_data
from remdinet.fixes import fixes_of
from remdinet.resolve import resolve
from remdinet.train import Callback, Trainer

from .blocks import GradProbe
from .checks import CHECKS, Step, report
from .modes import probe_copy, set_mode
from .probes import Probe, build_probes, mixed_batch
from .report import DoctorReport, Finding

SLICE = {
    "training.num_epochs": 6,
    "training.stage1_frac": 0.17,  # round(1.02) = 1 epoch
    "training.stage3_frac": 0.33,  # round(1.98) = 2 epochs
    "training.stage2_mix_epochs": 2,
    "training.stage3_mix_epochs": 1,
    "ramp.warmup_epochs": 2,
    "optim.mask_unfreeze_epoch": 1,
    "training.max_train_batches": 3,
    "training.max_val_batches": 1,
    "training.val_every": 1,
    "training.val_dense_epochs": 6,
    "training.checkpoint_every": 0,
    "training.image_size": 64,
    "early_stopping.enabled": False,
}
PROBE_SEED = 0


class DoctorCallback(Callback):
    """Feeds the observers of the registered checks (:data:`.checks.CHECKS`, one observer per
    class, shared by its checks) from the trainer's events; probes run on model copies under a
    forked RNG, so the slice trains exactly as it would without the doctor."""

    def __init__(self, cfg: Config, probes: list[Probe]) -> None:
        self.probes = probes
        observers = {cls: cls() for cls in dict.fromkeys(c.observer for c in CHECKS)}
        self.observers = list(observers.values())
        self.checks = [c(observers[c.observer], cfg) for c in CHECKS]

    def on_train_start(self, trainer: Trainer) -> None:
        for o in self.observers:
            o.on_train_start(trainer.model)

    def on_train_batch(self, trainer: Trainer, epoch: int, index: int, batch: dict, out: dict,
                       result, loss: torch.Tensor) -> None:
        step = Step(epoch, index, batch, out, result, loss, GradProbe(trainer.model))
        for o in self.observers:
            o.on_train_batch(trainer, step)

    def on_epoch_end(self, trainer: Trainer, epoch: int, stage: int, metrics: dict) -> None:
        last = epoch + 1 == trainer.schedule.num_epochs
        if last or trainer.schedule.stage_of(epoch + 1) != stage:
            with torch.random.fork_rng(devices=_rng_devices(trainer.device)):
                torch.manual_seed(PROBE_SEED)
                self._probe_terms(trainer, stage)
                if last:
                    self._probe_model(trainer)

    def on_train_end(self, trainer: Trainer, result) -> None:
        for o in self.observers:
            o.on_train_end(trainer.model)

    def _probe_terms(self, trainer: Trainer, stage: int) -> None:
        # Two inputs beyond the training batches: one image of every kind, and the vivid bars (the
        # side of the piecewise losses dark training images rarely reach). Each costs a backward
        # pass per term.
        model = set_mode(probe_copy(trainer.model), True)
        chosen = [mixed_batch(self.probes), *(p for p in self.probes if p.name == "colour_bars")]
        outputs = [(p, model(p.x.to(trainer.device))) for p in chosen]
        for o in self.observers:
            o.on_stage_probe(trainer, stage, model, outputs)

    def _probe_model(self, trainer: Trainer) -> None:
        model = probe_copy(trainer.model)
        for o in self.observers:
            o.on_slice_probe(model, self.probes)

    def findings(self) -> list[Finding]:
        return report(self.checks)


def _rng_devices(device: torch.device) -> list:
    return [device] if device.type == "cuda" else []


def doctor_config(overrides: dict[str, Any], explicit: dict[str, Any] | None = None) -> Config:
    """The config of a doctor slice: ``overrides`` (preset, config file, fix set), then the slice
    schedule :data:`SLICE`, then ``explicit`` (the user's ``--set`` items, which win)."""
    return resolve({**overrides, **SLICE, **(explicit or {})})


def _full_batches(cfg: Config, data: DataBundle) -> Config:
    """Cap the batches per epoch at the number of *full* training batches: the loader keeps a
    partial last batch, and a batch of one image cannot pass the BatchNorm layers in training."""
    full = len(data.train) // cfg.training.batch_size
    if full == 0:
        raise ConfigError(f"doctor: the training set has {len(data.train)} images, fewer than one "
                          f"batch of training.batch_size={cfg.training.batch_size}")
    cap = cfg.training.max_train_batches
    return apply_overrides(cfg, {"training.max_train_batches": min(cap, full) if cap else full})


def run_doctor(cfg: Config, data: DataBundle | None = None,
               callbacks: Sequence[Callback] = ()) -> DoctorReport:
    """Train the slice described by ``cfg`` (from :func:`doctor_config`) with the diagnostics
    attached and return the report. ``callbacks`` are the trainer's too (after the doctor's); an
    exception they raise ends the slice without a report."""
    start = time.perf_counter()
    fixset = fixes_of(cfg)
    if data is None:
        data = build_data(cfg)
    cfg = _full_batches(cfg, data)
    probes = build_probes(data.val)
    doctor = DoctorCallback(cfg, probes)
    with tempfile.TemporaryDirectory(prefix="remdinet-doctor-") as tmp:
        trainer = Trainer(cfg, data=data, callbacks=[doctor, *callbacks], quiet=True,
                          run_dir=Path(tmp))
        result = trainer.fit()
    findings = doctor.findings()
    info = {"epochs": result.epochs_run, "batches_per_epoch": cfg.training.max_train_batches,
            "batch_size": cfg.training.batch_size, "image_size": cfg.training.image_size,
            "stages": {"s1": trainer.schedule.s1, "s2_end": trainer.schedule.s2_end},
            "probes": [p.name for p in probes], "fixes": fixset.tags(),
            "seconds": round(time.perf_counter() - start, 1)}
    return DoctorReport(fixset.label(), findings, info)
