"""One tracked training run: the trainer inside an MLflow run (params, per-epoch metrics, final
metrics, the resolved config and a sample-output grid).

The *final* metrics of a run are the validation metrics of the epoch whose weights are the run's
best checkpoint (``best_model.pth``, chosen by the trainer's stage score), or of the last validation
epoch when no epoch reached ``training.save_best_stage``: they describe the model the run hands out.

A run's folder records its MLflow run (tag ``run_dir``, file ``mlflow_run.json`` in the folder, both
written when training starts), so that a stopped run can be continued in the same MLflow run from
its ``checkpoints/last.pth`` (:mod:`.resume`).
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable

import pandas as pd
import torch

from remdinet.checkpoint import load_checkpoint, load_model
from remdinet.colour import denormalize
from remdinet.config import Config
from remdinet.data import DataBundle, DataInfo, build_data
from remdinet.model.image import ImageEnhancer
from remdinet.paths import writable_dir
from remdinet.train import Callback, Trainer, TrainResult, metric_names, resolve_device

from .report import sample_grid
from .stopping import StopAtEpochEnd, StopRequest
from .tracking import MlflowCallback, Tracker

FINAL_KEYS = {metric_names.VAL_PSNR: "final_psnr", metric_names.VAL_SSIM: "final_ssim",
              metric_names.VAL_MS_SSIM: "final_ms_ssim"}
SAMPLE_IMAGES = 3
RUN_RECORD = "mlflow_run.json"  # in the run folder: {"run_id": ...}
TRAIN_EXPERIMENT = "train"  # the MLflow experiment of `remdi-exp train`
BEST_TAG = "best_checkpoint"  # the run's best checkpoint file, while it exists


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
            chosen = next(h for h in result.history if h[metric_names.EPOCH] == self.epoch)
        if metric_names.VAL_PSNR not in chosen:
            raise RuntimeError(f"run {result.run_dir}: no validation epoch, so no final metrics")
        return {name: float(chosen[key]) for key, name in FINAL_KEYS.items() if key in chosen}


class RunFolder(Callback):
    """Records where the run's files are (tag ``run_dir``) and, in that folder, which MLflow run
    they belong to (:data:`RUN_RECORD`; the tracking URI is not written: it may hold a
    password)."""

    def __init__(self, tracker: Tracker, run_id: str):
        self.tracker = tracker
        self.run_id = run_id

    def on_train_start(self, trainer: Any) -> None:
        self.tracker.set_tags(self.run_id, {"run_dir": str(trainer.run_dir)})
        (trainer.run_dir / RUN_RECORD).write_text(json.dumps({"run_id": self.run_id}),
                                                  encoding="utf-8")


class ResumedHistory(Callback):
    """Logs the epochs a resumed run restored from its checkpoint that the MLflow run lacks: all of
    them for a new run (a retried trial), none but those a killed process saved and did not log
    for a continued run; each epoch is logged once, at step = epoch."""

    def __init__(self, tracker: Tracker, run_id: str):
        self.tracker = tracker
        self.run_id = run_id

    def on_train_start(self, trainer: Any) -> None:
        if not trainer.history:
            return
        logged = {m.step for m in self.tracker.client.get_metric_history(self.run_id,
                                                                           metric_names.EPOCH)}
        for metrics in trainer.history:
            epoch = int(metrics[metric_names.EPOCH])
            if epoch not in logged:
                self.tracker.log_metrics(self.run_id, metrics, step=epoch)


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


def log_data_info(tracker: Tracker, run_id: str, info: DataInfo) -> None:
    """Image counts as metrics ``data.train_images``, ``data.val_images``, ``data.skipped`` (the
    files ``data.skip_bad`` left out), ``data.unused_gt``; the skipped files and reasons as
    ``data/skipped.json``, the ground-truth files no image pairs with as ``data/unused_gt.json``.
    The file list (split, file) is the run's MLflow dataset input, named ``LAYOUT:FOLDER``."""
    counts = info.counts
    files = pd.DataFrame([{"split": split, "file": name}
                          for split, names in (("train", info.split.train), ("val", info.split.val))
                          for name in names])
    tracker.log_dataset(run_id, files, f"{info.layout}:{info.root.name}", str(info.root), "train")
    tracker.log_metrics(run_id, {"data.train_images": counts.train, "data.val_images": counts.val,
                                 "data.skipped": counts.skipped, "data.unused_gt": counts.unused_gt})
    if info.skipped:
        tracker.log_text(run_id, json.dumps([asdict(s) for s in info.skipped], indent=2,
                                            ensure_ascii=False), "data/skipped.json")
    if info.unused_gt:
        tracker.log_text(run_id, json.dumps(info.unused_gt, indent=2, ensure_ascii=False),
                         "data/unused_gt.json")


def train_in_run(tracker: Tracker | None, run_id: str | None, cfg: Config,
                 callbacks: Iterable[Callback] = (), run_dir: str | Path | None = None,
                 quiet: bool = False, samples: int = SAMPLE_IMAGES, resume: str | Path | None = None,
                 continued: bool = False, data: DataBundle | None = None,
                 model: bool = True) -> RunOutcome:
    """Train ``cfg`` and log everything into the open run ``run_id``; the caller terminates it.

    ``tracker`` None trains without any tracking (the baseline for measuring its overhead).
    Exceptions from the trainer or a callback (Optuna's ``TrialPruned``) propagate unchanged.
    ``resume``: a checkpoint of the same config to continue from (``Trainer.fit(resume=...)``);
    the restored epochs the run lacks are logged (:class:`ResumedHistory`). ``continued``: the run
    is the one that wrote ``resume`` and holds its params and data counts already (MLflow params
    cannot change, and a runtime key such as the device may).
    The data set (``data``, or built from ``cfg``) and its skipped files are logged before
    training (:func:`log_data_info`). Afterwards the run's description states its final metrics
    and, with ``model``, the best checkpoint is logged as an MLflow PyTorch model
    (:func:`log_best_model`).
    """
    start = time.perf_counter()
    selected = SelectedEpoch()
    extra = [] if tracker is None else [MlflowCallback(tracker, run_id),
                                        RunFolder(tracker, run_id), ResumedHistory(tracker, run_id)]
    if tracker is not None and not continued:
        tracker.log_params(run_id, cfg.to_flat())
    trainer = Trainer(cfg, data=data, callbacks=[*extra, selected, *callbacks], quiet=quiet,
                      run_dir=run_dir)
    if tracker is not None:
        if not continued:
            log_data_info(tracker, run_id, trainer.data.info)
        tracker.set_tags(run_id, {"device": str(trainer.device)})
    result = trainer.fit(resume=resume)
    final = selected.final_metrics(result)
    if tracker is not None:
        tracker.log_metrics(run_id, {**final, "best_val_psnr": result.best_val_psnr,
                                     "best_val_ssim": result.best_val_ssim,
                                     "epochs_run": result.epochs_run}, step=result.epochs_run - 1)
        tracker.set_tags(run_id, {BEST_TAG: str(result.best_checkpoint),
                                  "selected_epoch": "last" if selected.epoch is None
                                  else str(selected.epoch),
                                  "stopped_early": str(result.stopped_early).lower()})
        tracker.log_file(run_id, result.run_dir / "config.toml")
        if samples:
            rows = sample_rows(result.best_checkpoint, trainer.data.val, trainer.device, samples)
            tracker.log_figure(run_id, sample_grid(rows), "samples/grid.png")
        uri = log_best_model(tracker, run_id, result.best_checkpoint) if model else None
        tracker.describe(run_id, describe_run(final, result, selected.epoch, uri))
    return RunOutcome(run_id, result, final, time.perf_counter() - start)


def log_best_model(tracker: Tracker, run_id: str, checkpoint: Path) -> str:
    """The checkpoint's model, as an image-to-image module on the CPU (:class:`ImageEnhancer`:
    [0, 1] image in, enhanced image out), as the run's MLflow model; returns its URI."""
    net, cfg = load_model(checkpoint, device="cpu")
    return tracker.log_model(run_id, ImageEnhancer(net), cfg.to_flat())


def describe_run(final: dict[str, float], result: TrainResult, epoch: int | None,
                 model_uri: str | None) -> str:
    """The run's Overview description (Markdown): final metrics, the epoch they are from, the
    model."""
    metrics = ", ".join(f"{k} **{v:.4f}**" for k, v in final.items())
    where = "the last validation epoch" if epoch is None else f"epoch {epoch}"
    text = (f"{metrics} ({where}, {result.best_checkpoint.name}; {result.epochs_run} epoch(s)"
            f"{', stopped early' if result.stopped_early else ''}).")
    if model_uri is not None:
        text += f"\n\nModel: `{model_uri}` (`mlflow.pytorch.load_model`: a [0, 1] image in, the " \
                f"enhanced image out)."
    return text


def check_run_inputs(cfg: Config) -> None:
    """The device and a writable ``training.output_dir`` of ``cfg``, checked before any run is
    created: a wrong one is an error naming its key and leaves no FAILED run behind."""
    resolve_device(cfg.training.device)
    writable_dir(cfg.training.output_dir, "training.output_dir")


def tracked_run(tracker: Tracker, experiment_id: str, cfg: Config, run_name: str,
                tags: dict[str, Any], parent_run_id: str | None = None,
                run_dir_root: str | Path | None = None, quiet: bool = False) -> RunOutcome:
    """A complete run: created, trained and terminated (FINISHED / FAILED / KILLED).

    ``run_dir_root``: the trainer's folder is ``<run_dir_root>/<MLflow run id>``; None lets the
    trainer make a fresh folder under ``training.output_dir``. The first SIGINT/SIGTERM stops
    training at the end of the current epoch, after its ``last.pth`` (:mod:`.stopping`): the run
    ends KILLED and :class:`~.stopping.Interrupted` propagates; :func:`continued_run` resumes it.
    The inputs (:func:`check_run_inputs`, the data set) are checked before the run is created.
    """
    check_run_inputs(cfg)
    data = build_data(cfg)
    with StopRequest() as stop, \
            tracker.active_run(experiment_id, run_name, tags, parent_run_id) as run_id:
        run_dir = None if run_dir_root is None else Path(run_dir_root) / run_id
        return train_in_run(tracker, run_id, cfg, callbacks=[StopAtEpochEnd(stop)],
                            run_dir=run_dir, quiet=quiet, data=data)


def continued_run(tracker: Tracker, run_id: str, cfg: Config, checkpoint: Path,
                  quiet: bool = False) -> RunOutcome:
    """Continue the stopped run ``run_id`` from its ``checkpoint`` in the same MLflow run
    (reopened RUNNING, then terminated as by :func:`tracked_run`), in the checkpoint's run folder;
    the epochs after the checkpoint's are logged at their own steps. The inputs are checked before
    the run is reopened, as by :func:`tracked_run`."""
    check_run_inputs(cfg)
    data = build_data(cfg)
    with StopRequest() as stop, tracker.reopened(run_id):
        tracker.set_tags(run_id, {"resumed_from": str(checkpoint)})
        return train_in_run(tracker, run_id, cfg, callbacks=[StopAtEpochEnd(stop)], quiet=quiet,
                            resume=checkpoint, continued=True, data=data)
