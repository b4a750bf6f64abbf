"""One tracked training run: the trainer inside an MLflow run (params, per-epoch metrics, final
metrics, the resolved config and a sample-output grid).

The *final* metrics of a run are the validation metrics of the epoch whose weights are the run's
best checkpoint (``best_model.pth``, chosen by the trainer's stage score), or of the last validation
epoch when no epoch reached ``training.save_best_stage``: they describe the model the run hands out.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import torch

from remdinet.checkpoint import load_checkpoint, load_model
from remdinet.colour import denormalize
from remdinet.config import Config
from remdinet.train import Callback, Trainer, TrainResult

from .report import sample_grid
from .tracking import MlflowCallback, Tracker

FINAL_KEYS = {"val_psnr": "final_psnr", "val_ssim": "final_ssim", "val_ms_ssim": "final_ms_ssim"}
SAMPLE_IMAGES = 3


@dataclass
class RunOutcome:
    run_id: str | None
    result: TrainResult
    final: dict[str, float]
    seconds: float


class SelectedEpoch(Callback):
    """Remembers the epoch whose weights went into ``best_model.pth``."""

    def __init__(self) -> None:
        self.epoch: int | None = None

    def on_train_start(self, trainer: Any) -> None:
        # a resumed run may keep the best checkpoint written before the interruption
        best = trainer.best_checkpoint
        if best is not None and Path(best).name == "best_model.pth":
            self.epoch = int(load_checkpoint(best)["trainer"]["epoch"])

    def on_checkpoint(self, trainer: Any, path: Path, epoch: int) -> None:
        if Path(path).name == "best_model.pth":
            self.epoch = epoch

    def final_metrics(self, result: TrainResult) -> dict[str, float]:
        if self.epoch is None:
            chosen = result.final_metrics
        else:
            chosen = next(h for h in result.history if h["epoch"] == self.epoch)
        if "val_psnr" not in chosen:
            raise RuntimeError(f"run {result.run_dir}: no validation epoch, so no final metrics")
        return {name: float(chosen[key]) for key, name in FINAL_KEYS.items() if key in chosen}


def sample_rows(checkpoint: Path, dataset: Any, device: torch.device, n: int = SAMPLE_IMAGES
                ) -> list[tuple[str, torch.Tensor, torch.Tensor, torch.Tensor | None]]:
    """``(name, input, output, target)`` of the first ``n`` validation images, enhanced one at a
    time by the checkpoint's model (all in [0, 1])."""
    model, _ = load_model(checkpoint, device=device)
    rows = []
    with torch.no_grad():
        for i in range(min(n, len(dataset))):
            item = dataset[i]
            out = model(item["input"].unsqueeze(0).to(device))["enhanced"][0].float().cpu()
            rows.append((item["name"], denormalize(item["input"][None])[0], out, item["target"]))
    return rows


def log_data_info(tracker: Tracker, run_id: str, info: dict[str, Any]) -> None:
    """Image counts as metrics ``data.train_images``, ``data.val_images``, ``data.skipped`` (the
    files ``data.skip_bad`` left out); the skipped files and reasons as ``data/skipped.json``."""
    counts = info["counts"]
    tracker.log_metrics(run_id, {"data.train_images": counts["train"],
                                 "data.val_images": counts["val"],
                                 "data.skipped": counts["skipped"]})
    if info["skipped"]:
        tracker.log_text(run_id, json.dumps(info["skipped"], indent=2, ensure_ascii=False),
                         "data/skipped.json")


def train_in_run(tracker: Tracker | None, run_id: str | None, cfg: Config,
                 callbacks: Iterable[Callback] = (), run_dir: str | Path | None = None,
                 quiet: bool = False, log: Callable[[str], None] | None = None,
                 samples: int = SAMPLE_IMAGES, resume: str | Path | None = None) -> RunOutcome:
    """Train ``cfg`` and log everything into the open run ``run_id``; the caller terminates it.

    ``tracker`` None trains without any tracking (the baseline for measuring its overhead).
    Exceptions from the trainer or a callback (Optuna's ``TrialPruned``) propagate unchanged.
    ``resume``: a checkpoint of the same config to continue from (``Trainer.fit(resume=...)``).
    The data set's skipped files are logged before training (:func:`log_data_info`).
    """
    start = time.perf_counter()
    selected = SelectedEpoch()
    extra = [] if tracker is None else [MlflowCallback(tracker, run_id)]
    if tracker is not None:
        tracker.log_params(run_id, cfg.to_flat())
    trainer = Trainer(cfg, callbacks=[*extra, selected, *callbacks], quiet=quiet, run_dir=run_dir,
                      log=log)
    if tracker is not None:
        log_data_info(tracker, run_id, trainer.data.info)
        tracker.set_tags(run_id, {"device": str(trainer.device)})
    result = trainer.fit(resume=resume)
    final = selected.final_metrics(result)
    if tracker is not None:
        tracker.log_metrics(run_id, {**final, "best_val_psnr": result.best_val_psnr,
                                     "best_val_ssim": result.best_val_ssim,
                                     "epochs_run": result.epochs_run}, step=result.epochs_run - 1)
        tracker.set_tags(run_id, {"run_dir": str(result.run_dir),
                                  "best_checkpoint": str(result.best_checkpoint),
                                  "selected_epoch": "last" if selected.epoch is None
                                  else str(selected.epoch),
                                  "stopped_early": str(result.stopped_early).lower()})
        tracker.log_file(run_id, result.run_dir / "config.toml")
        if samples:
            rows = sample_rows(result.best_checkpoint, trainer.data.val, trainer.device, samples)
            tracker.log_figure(run_id, sample_grid(rows), "samples/grid.png")
    return RunOutcome(run_id, result, final, time.perf_counter() - start)


def tracked_run(tracker: Tracker, experiment_id: str, cfg: Config, run_name: str,
                tags: dict[str, Any], parent_run_id: str | None = None,
                run_dir_root: str | Path | None = None, quiet: bool = False,
                log: Callable[[str], None] | None = None) -> RunOutcome:
    """A complete run: created, trained and terminated (FINISHED / FAILED / KILLED).

    ``run_dir_root``: the trainer's folder is ``<run_dir_root>/<MLflow run id>``; None lets the
    trainer make a fresh folder under ``training.output_dir``.
    """
    with tracker.active_run(experiment_id, run_name, tags, parent_run_id) as run_id:
        run_dir = None if run_dir_root is None else Path(run_dir_root) / run_id
        return train_in_run(tracker, run_id, cfg, run_dir=run_dir, quiet=quiet, log=log)
