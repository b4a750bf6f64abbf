"""The staged trainer of the reference (``MinimalTrainer``, §5), with exact resume.

What happens in an epoch, in order (each step cites the reference):

1. ``update_stage`` (§5.2): on a stage change the old criterion is kept for mixing, the switch epoch
   recorded, patience reset (``best_score`` too under ``reset_best_per_stage``), the one-shot unfreeze
   flag reset; entering stage 2 freezes the mask predictor (§5.3); a cosine scheduler replaces the
   current one (§5.1).
2. Epoch start (§5.4, §5.5): the stage-2 criterion gets the cosine-ramped stage-2 weights, the stage-3
   criterion the (inert) perceptual warm-up; with ``mask_unfreeze.unfreeze`` on, the mask predictor
   is unfrozen once at stage-2 epoch ``optim.mask_unfreeze_epoch`` with LR ``optim.mask_unfreeze_lr``.
3. Training (§5.7): mixed loss, trainer clamp, non-finite losses skipped and counted, backward of
   ``loss / accum``, clip + step at accumulation boundaries and one remainder step. With
   ``mask_unfreeze.unfreeze`` off, the per-batch loss function multiplies the mask LR by
   ``optim.mask_legacy_lr_factor`` on every batch of that epoch, before backward and step, and only
   when an old criterion exists and the batch has a target: the pre-fix LR collapse.
4. Validation on the epochs of §5.8, scheduler step, model selection and early stopping
   (:mod:`.selection`), checkpoints, callbacks.

Deviations from the reference, all deliberate: validation does not swallow exceptions, and when the
NaN guard leaves no finite validation batch its metrics are NaN (logged), not 0; every
checkpoint holds the full state (scheduler, RNG, counters, flags, best scores), so resuming continues
exactly; the per-epoch loader order is a function of the seed and the epoch.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import torch
from torch.optim.lr_scheduler import ReduceLROnPlateau
from tqdm.auto import tqdm

from ..checkpoint import (CheckpointError, load_checkpoint, model_counters, restore_model_counters,
                          rng_state, save_checkpoint, set_rng_state)
from ..colour import denormalize, hsv_saturation
from ..config import Config, StageWeights, save_toml
from ..data import DataBundle, DataInfo, build_data, make_loader
from ..fixes import (MASK_UNFREEZE_UNFREEZE, MASK_UNFREEZE_VAL_NAN_GUARD, NO_LOSS_CLAMP,
                     RESET_BEST_PER_STAGE, SCHEDULER_EVERY_EPOCH, fixes_of)
from ..losses import LossOutput, build_stage_loss
from ..metrics import MS_SSIM_MIN_SIDE, ms_ssim, psnr, ssim
from ..model import build_model
from .callbacks import Callback, CallbackList
from .device import (autocast, autocast_dtype, keep_freed_memory, resolve_device, seed_everything,
                     wants_cudnn_benchmark)
from .metric_names import (EPOCH, EPOCH_SECONDS, IMAGES_PER_SECOND, MIX_FACTOR, SKIPPED_BATCHES,
                           STAGE, TRAIN_LOSS, TRAIN_PSNR, VAL_ADJUSTED_PSNR, VAL_MS_SSIM, VAL_PSNR,
                           VAL_SATURATION, VAL_SCORE, VAL_SKIPPED_BATCHES, VAL_SSIM, loss_metric,
                           lr_metric)
from .optim import (build_optimizer, cosine_scheduler, group_lr, plateau_scheduler,
                    restore_scheduler, scale_group_lr, scheduler_state, set_group_lr)
from .schedule import StageSchedule, mix_factor, mix_losses, perceptual_warmup, ramp_weights
from .selection import Selection

# Keys that describe where/how a run executes, not what it computes: a resumed run may change them.
RUNTIME_KEYS = frozenset({"training.device", "training.num_workers", "training.output_dir",
                          "training.compile"})
POSTFIX_EVERY = 10  # batches between progress-bar loss updates (each one syncs the device)
_log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    best_val_psnr: float
    best_val_ssim: float
    final_metrics: dict[str, float]  # the metrics of the last validation epoch
    history: list[dict[str, float]]
    epochs_run: int
    stopped_early: bool
    run_dir: Path
    best_checkpoint: Path  # best_model.pth, or final_model.pth when no epoch reached save_best_stage
    skipped_batches: int
    data_info: DataInfo


def _best(history: list[dict[str, float]], key: str) -> float:
    """Largest finite value of ``key`` over the epochs; NaN when there is none."""
    values = [h[key] for h in history if math.isfinite(h[key])]
    return max(values) if values else math.nan


def _set_trainable(module: torch.nn.Module, flag: bool) -> None:
    for p in module.parameters():
        p.requires_grad_(flag)


class Trainer:
    """``Trainer(cfg, data=None, callbacks=(), quiet=False, run_dir=None).fit(resume=None)``.

    ``data`` is a :class:`remdinet.data.DataBundle`; None builds it from ``cfg.data``. ``run_dir``
    None: a new folder under ``training.output_dir`` (or, on resume, the checkpoint's run folder).
    Progress lines (one per epoch, stage changes) go to this module's logger; the per-batch
    progress bar is shown on a terminal only, and never when ``quiet``.
    """

    def __init__(self, cfg: Config, data: DataBundle | None = None, callbacks: Iterable[Callback] = (), quiet: bool = False,
                 run_dir: str | Path | None = None):
        self.cfg = cfg
        self.fixes = fixes_of(cfg)
        self.quiet = quiet
        self.callbacks = CallbackList(callbacks)
        self.schedule = StageSchedule.from_config(cfg)
        self.device = resolve_device(cfg.training.device)
        self.amp_dtype = autocast_dtype(cfg.training.precision, self.device)
        if self.device.type == "cpu":
            torch.set_flush_denormal(True)
            keep_freed_memory()
        # Training crops are always image_size, validation ones only when squashed to it. The flag
        # is process-wide: set by every run, so one study trial's choice does not carry into the next.
        torch.backends.cudnn.benchmark = wants_cudnn_benchmark(
            self.device, fixed_sizes=cfg.data.val_resize == "squash")
        seed_everything(cfg.training.seed)
        self.data = data if data is not None else build_data(cfg)
        self.train_loader = make_loader(self.data.train, cfg, train=True, device=self.device)
        self.val_loader = make_loader(self.data.val, cfg, train=False, device=self.device)

        self.model = build_model(cfg).to(self.device)
        self.forward_model = torch.compile(self.model) if cfg.training.compile else self.model
        self.criteria = {s: build_stage_loss(s, cfg, self.fixes, self.model).to(self.device)
                         for s in (1, 2, 3)}
        self.optimizer = build_optimizer(self.model, cfg)
        self.scheduler = plateau_scheduler(self.optimizer, cfg)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.selection = Selection()

        self.stage = 1
        self.old_stage: int | None = None
        self.switch_epoch = 0
        self.loss_mix = 1.0
        self.unfreeze_done = False
        self.epoch = 0  # the next epoch to run
        self.history: list[dict[str, float]] = []
        self.skipped_batches = 0
        self.stopped_early = False
        self.best_checkpoint: Path | None = None
        self.run_dir: Path | None = Path(run_dir) if run_dir is not None else None
        self._ms_ssim_noted = False

    # -- public -------------------------------------------------------------------------------
    @property
    def checkpoint_dir(self) -> Path:
        return self.run_dir / "checkpoints"

    def fit(self, resume: str | Path | None = None) -> TrainResult:
        if resume is not None:
            self._restore(load_checkpoint(resume), Path(resume))
            if self.run_dir is None:
                self.run_dir = Path(resume).resolve().parent.parent
        if self.run_dir is None:
            out = Path(self.cfg.training.output_dir)
            out.mkdir(parents=True, exist_ok=True)
            self.run_dir = Path(tempfile.mkdtemp(prefix=time.strftime("run-%Y%m%d-%H%M%S-"), dir=out))
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        save_toml(self.cfg, self.run_dir / "config.toml")
        _log.info(f"run {self.run_dir}: {self.fixes.label()}, device {self.device}, "
                 f"stages 0-{self.schedule.s1 - 1} / {self.schedule.s1}-{self.schedule.s2_end - 1} / "
                 f"{self.schedule.s2_end}-{self.schedule.num_epochs - 1}")
        self.callbacks("on_train_start", self)
        if self.epoch == 0:
            self.callbacks("on_stage_start", self, 1, 0)
        while self.epoch < self.schedule.num_epochs and not self.stopped_early:
            self._run_epoch(self.epoch)
        final = self._save("final_model.pth")
        if self.best_checkpoint is None:
            self.best_checkpoint = final
        validated = [h for h in self.history if VAL_PSNR in h]
        result = TrainResult(
            best_val_psnr=_best(validated, VAL_PSNR), best_val_ssim=_best(validated, VAL_SSIM),
            final_metrics=dict(validated[-1]) if validated else {}, history=list(self.history),
            epochs_run=len(self.history), stopped_early=self.stopped_early, run_dir=self.run_dir,
            best_checkpoint=self.best_checkpoint, skipped_batches=self.skipped_batches,
            data_info=self.data.info)
        self.callbacks("on_train_end", self, result)
        return result

    # -- one epoch ----------------------------------------------------------------------------
    def _run_epoch(self, epoch: int) -> None:
        start = time.perf_counter()
        self._update_stage(epoch)
        self._prepare_epoch(epoch)
        metrics: dict[str, float] = {EPOCH: epoch, STAGE: self.stage, MIX_FACTOR: self.loss_mix}
        metrics.update(self._train_epoch(epoch))
        # The LRs the epoch ended its training with (before this epoch's scheduler step).
        for group in ("curve", "mask", "other"):
            metrics[lr_metric(group)] = group_lr(self.optimizer, group)
        validated = self.schedule.is_validation_epoch(epoch, self.cfg)
        decision = None
        if validated:
            metrics.update(self._validate())
            # The reference scores with MS-SSIM, which small images cannot have (see _validate).
            ssim_key = VAL_MS_SSIM if VAL_MS_SSIM in metrics else VAL_SSIM
            ssim_for_score = metrics[ssim_key]
            decision = self.selection.update(self.stage, metrics[VAL_PSNR], ssim_for_score,
                                             metrics[VAL_SATURATION], self.cfg)
            metrics[VAL_ADJUSTED_PSNR] = metrics[VAL_PSNR] - decision.penalty
            metrics[VAL_SCORE] = decision.monitor
            self.stopped_early = decision.stop
        self._step_scheduler(validated, metrics)
        metrics[EPOCH_SECONDS] = time.perf_counter() - start
        self.history.append(metrics)
        self.epoch = epoch + 1

        saved = []
        if decision is not None and decision.save_best_s1:
            saved.append(self._save("best_s1.pth"))
        if decision is not None and decision.save_best_model:
            self.best_checkpoint = self.checkpoint_dir / "best_model.pth"
            saved.append(self._save("best_model.pth"))
        every = self.cfg.training.checkpoint_every
        if every and epoch > 0 and epoch % every == 0:
            saved.append(self._save(f"checkpoint_epoch_{epoch}.pth"))
        saved.append(self._save("last.pth"))
        _log.info(self._summary(metrics))
        if self.stopped_early:
            _log.info(f"early stop at epoch {epoch} (stage {self.stage}, patience "
                     f"{self.selection.patience})")
        for path in saved:
            self.callbacks("on_checkpoint", self, path, epoch)
        self.callbacks("on_epoch_end", self, epoch, self.stage, dict(metrics))

    def _update_stage(self, epoch: int) -> None:
        stage = self.schedule.stage_of(epoch)
        if stage == self.stage:
            return
        self.old_stage, self.stage = self.stage, stage
        self.switch_epoch = epoch
        self.loss_mix = 0.0
        self.selection.new_stage(reset_best=self.fixes.corrects(RESET_BEST_PER_STAGE))
        self.unfreeze_done = False
        if stage == 2:
            _set_trainable(self.model.mask_predictor, False)
            for module in (self.model.colour_head, self.model.color_enhancer):
                if module is not None:
                    _set_trainable(module, True)
        self.scheduler = cosine_scheduler(self.optimizer, self.cfg, epoch)
        _log.info(f"epoch {epoch}: stage {stage} begins")
        self.callbacks("on_stage_start", self, stage, epoch)

    def _prepare_epoch(self, epoch: int) -> None:
        cfg = self.cfg
        e = epoch - self.switch_epoch
        self.loss_mix = mix_factor(self.stage, e, cfg)
        if self.stage == 2:
            self.criteria[2].weights = ramp_weights(cfg.stage2, cfg.ramp.keys, e, cfg.ramp.warmup_epochs)
            if (self.fixes.on(MASK_UNFREEZE_UNFREEZE) and e == cfg.optim.mask_unfreeze_epoch
                    and not self.unfreeze_done):
                _set_trainable(self.model.mask_predictor, True)
                unfreeze_lr = cfg.optim.mask_unfreeze_lr * cfg.optim.lr_scale
                set_group_lr(self.optimizer, "mask", unfreeze_lr)
                self.unfreeze_done = True
                _log.info(f"epoch {epoch}: mask predictor unfrozen, mask LR {unfreeze_lr:g}")
        elif self.stage == 3:
            self.criteria[3].weights.w_perceptual = perceptual_warmup(
                cfg.stage3.w_perceptual, e, self.switch_epoch, self.schedule, cfg)

    def _batch_loss(self, out: dict, target: torch.Tensor | None, input01: torch.Tensor,
                    epoch: int) -> LossOutput:
        """The reference's ``get_mixed_loss`` (§5.4), called once per training batch."""
        criterion = self.criteria[self.stage]
        if self.old_stage is None or target is None:
            return criterion(out, target, input01)
        if (self.stage == 2 and not self.fixes.on(MASK_UNFREEZE_UNFREEZE)
                and epoch - self.switch_epoch == self.cfg.optim.mask_unfreeze_epoch):
            # Pre-fix: this block sat in the per-batch loss function, so it ran on every batch.
            _set_trainable(self.model.mask_predictor, True)
            scale_group_lr(self.optimizer, "mask", self.cfg.optim.mask_legacy_lr_factor)
        new = criterion(out, target, input01)
        if self.loss_mix >= 1.0:
            return new
        return mix_losses(self.criteria[self.old_stage](out, target, input01), new, self.loss_mix)

    def _optimizer_step(self) -> None:
        self.scaler.unscale_(self.optimizer)
        # clip_grad_norm_ with max norm 0 would zero every gradient; 0 means "off" instead.
        if self.cfg.optim.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.optim.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)

    def _train_epoch(self, epoch: int) -> dict[str, float]:
        cfg, device = self.cfg, self.device
        self.model.train()
        self.train_loader.sampler.set_epoch(epoch)
        cap = cfg.training.max_train_batches
        total = min(cap, len(self.train_loader)) if cap else len(self.train_loader)
        accum = cfg.training.accum_batches
        clamp = None if self.fixes.corrects(NO_LOSS_CLAMP) else cfg.loss.trainer_clamp
        loss_sum = torch.zeros((), device=device)
        psnr_sum = torch.zeros((), device=device)
        term_sums: dict[str, torch.Tensor] = {}
        term_counts: dict[str, int] = {}
        valid = supervised = skipped = images = 0
        # disable=None: tqdm draws the bar only on a terminal; a log file gets the epoch line only
        bar = tqdm(total=total, desc=f"epoch {epoch} [stage {self.stage}]", unit="batch",
                   disable=True if self.quiet else None, leave=False, dynamic_ncols=True)
        start = time.perf_counter()
        try:
            for i, batch in enumerate(self.train_loader):
                if i >= total:
                    break
                x = batch["input"].to(device, non_blocking=True)
                target = batch["target"]
                target = target.to(device, non_blocking=True) if target is not None else None
                with autocast(device, self.amp_dtype):
                    out = self.forward_model(x)
                    result = self._batch_loss(out, target, denormalize(x), epoch)
                loss = result.total.float()
                if clamp is not None:
                    loss = loss.clamp(0.0, clamp)
                self.callbacks("on_train_batch", self, epoch, i, batch, out, result, loss)
                bar.update(1)
                # The one per-batch device sync: skipping a batch is a Python decision (§5.7).
                if not bool(torch.isfinite(loss)):
                    skipped += 1
                    continue
                self.scaler.scale(loss / accum).backward()
                valid += 1
                # The index counts skipped batches, the remainder test below valid ones (§5.7).
                if (i + 1) % accum == 0:
                    self._optimizer_step()
                loss_sum += loss.detach()
                for name, value in result.raw.tensors().items():
                    term_sums[name] = term_sums.get(name, 0.0) + value.float()
                    term_counts[name] = term_counts.get(name, 0) + 1
                if target is not None:
                    psnr_sum += psnr(out["enhanced"].detach().float(), target).mean()
                    supervised += 1
                images += x.shape[0]
                if not bar.disable and valid % POSTFIX_EVERY == 0:
                    seconds = time.perf_counter() - start
                    bar.set_postfix(loss=f"{loss_sum.item() / valid:.4f}",
                                    img_s=f"{images / max(seconds, 1e-9):.1f}")
            if valid % accum:
                self._optimizer_step()
        finally:
            bar.close()
        seconds = time.perf_counter() - start
        self.skipped_batches += skipped
        metrics: dict[str, float] = {
            TRAIN_LOSS: loss_sum.item() / valid if valid else float("nan"),
            SKIPPED_BATCHES: skipped,
            IMAGES_PER_SECOND: images / seconds if seconds > 0 else 0.0,
        }
        if supervised:
            metrics[TRAIN_PSNR] = psnr_sum.item() / supervised
        if term_sums:
            values = torch.stack([term_sums[n].reshape(()) for n in term_sums]).tolist()
            metrics.update({loss_metric(n): v / term_counts[n] for n, v in zip(term_sums, values)})
        return metrics

    def _validate(self) -> dict[str, float]:
        """Mean over batches of the per-batch means (§5.8); Gaussian SSIM always, MS-SSIM only when
        every validated image's smaller side is > 160 pixels. Batches the NaN guard leaves out are
        counted in ``val_skipped_batches`` and logged; none left: the metrics are NaN."""
        cfg, device = self.cfg, self.device
        guard = self.fixes.on(MASK_UNFREEZE_VAL_NAN_GUARD)
        self.model.eval()
        names = ("psnr", "ssim", "ms_ssim", "saturation")
        sums = {n: torch.zeros((), device=device) for n in names}
        count = torch.zeros((), device=device)
        batches = ms_batches = 0
        cap = cfg.training.max_val_batches
        with torch.no_grad(), autocast(device, self.amp_dtype):
            for j, batch in enumerate(self.val_loader):
                if cap and j >= cap:
                    break
                if batch["target"] is None:
                    continue
                out = self.forward_model(batch["input"].to(device, non_blocking=True))
                e = out["enhanced"].float()
                t = batch["target"].to(device, non_blocking=True)
                h, w = min(e.shape[-2], t.shape[-2]), min(e.shape[-1], t.shape[-1])
                e, t = e[..., :h, :w], t[..., :h, :w]
                values = {"psnr": psnr(e, t).mean(), "ssim": ssim(e, t).mean(),
                          "saturation": hsv_saturation(e).mean()}
                if min(h, w) > MS_SSIM_MIN_SIDE:
                    values["ms_ssim"] = ms_ssim(e, t).mean()
                    ms_batches += 1
                batches += 1
                if guard:
                    ok = torch.isfinite(values["psnr"]) & torch.isfinite(values["ssim"])
                    if "ms_ssim" in values:
                        ok &= torch.isfinite(values["ms_ssim"])
                    for n, v in values.items():
                        sums[n] += torch.where(ok, v, torch.zeros_like(v))
                    count += ok.float()
                else:
                    for n, v in values.items():
                        sums[n] += v
                    count += 1.0
        n_valid = int(count.item())
        totals = dict(zip(names, torch.stack([sums[n] for n in names]).tolist()))
        # The reference reports 0 when no batch was valid. Without ground truth that stays (logged
        # below); when the guard skipped every batch the metrics are NaN, which says "diverged"
        # (a study's DivergenceGuard fails the trial) where 0 would pass for a poor model.
        empty = math.nan if batches else 0.0
        mean = {n: totals[n] / n_valid if n_valid else empty for n in names}
        if n_valid < batches:
            _log.info(f"validation: {batches - n_valid} of {batches} batch(es) had non-finite "
                     f"metrics and were left out"
                     + ("; none was finite, so the validation metrics are NaN" if not n_valid
                        else ""))
        metrics = {VAL_PSNR: mean["psnr"], VAL_SSIM: mean["ssim"],
                   VAL_SATURATION: mean["saturation"], VAL_SKIPPED_BATCHES: batches - n_valid}
        if batches and ms_batches == batches:
            metrics[VAL_MS_SSIM] = mean["ms_ssim"]
        elif not self._ms_ssim_noted:
            self._ms_ssim_noted = True
            _log.info(f"val_ms_ssim not computed: validation images need a smaller side > "
                     f"{MS_SSIM_MIN_SIDE} px; model selection uses val_ssim in its place")
        if batches == 0:
            _log.info("validation: no batch with ground truth; metrics are 0")
        return metrics

    def _step_scheduler(self, validated: bool, metrics: dict[str, float]) -> None:
        if isinstance(self.scheduler, ReduceLROnPlateau):
            # Plateau needs a metric, so it can only step on validation epochs.
            if validated:
                self.scheduler.step(metrics[VAL_PSNR])
        elif validated or self.fixes.corrects(SCHEDULER_EVERY_EPOCH):
            self.scheduler.step()

    def _summary(self, m: dict[str, float]) -> str:
        parts = [f"epoch {m['epoch']} [s{m['stage']}]", f"loss {m['train_loss']:.4f}"]
        if TRAIN_PSNR in m:
            parts.append(f"train psnr {m['train_psnr']:.2f}")
        if VAL_PSNR in m:
            parts.append(f"val psnr {m['val_psnr']:.2f} ssim {m['val_ssim']:.4f} "
                         f"sat {m['val_saturation']:.3f}")
        if m[SKIPPED_BATCHES]:
            parts.append(f"skipped {m['skipped_batches']}")
        parts += self._status_flags(m)
        parts.append(f"{m['images_per_second']:.1f} img/s")
        return " | ".join(parts)

    def _status_flags(self, m: dict[str, float]) -> list[str]:
        """The reference's epoch flags (§5.8): OVERFIT, LOW_COLOR, PENALTY:x."""
        if VAL_PSNR not in m:
            return []
        flags = []
        if m[EPOCH] > 5 and m.get(TRAIN_PSNR, -math.inf) - m[VAL_PSNR] > 4:
            flags.append("OVERFIT")
        if m[VAL_SATURATION] < self.cfg.color_thresholds.min_saturation:
            flags.append("LOW_COLOR")
        penalty = m[VAL_PSNR] - m[VAL_ADJUSTED_PSNR]
        if penalty > 0:
            flags.append(f"PENALTY:{penalty:.2f}")
        return flags

    # -- checkpoints --------------------------------------------------------------------------
    def _save(self, name: str) -> Path:
        return save_checkpoint(self.checkpoint_dir / name, self.state())

    def state(self) -> dict[str, Any]:
        """The full training state after the last completed epoch (see :mod:`remdinet.checkpoint`)."""
        return {
            "config": self.cfg.to_flat(),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": scheduler_state(self.scheduler),
            "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else None,
            "trainer": {
                "epoch": self.epoch - 1, "stage": self.stage, "old_stage": self.old_stage,
                "switch_epoch": self.switch_epoch, "loss_mix": self.loss_mix,
                "unfreeze_done": self.unfreeze_done, "stopped_early": self.stopped_early,
                "skipped_batches": self.skipped_batches,
                "best_checkpoint": self.best_checkpoint.name if self.best_checkpoint else None,
                "trainable": {n: p.requires_grad for n, p in self.model.named_parameters()},
                "criteria_weights": {s: dataclasses.asdict(c.weights) for s, c in self.criteria.items()},
                **model_counters(self.model),
            },
            "selection": self.selection.state_dict(),
            "history": [dict(h) for h in self.history],
            "rng": rng_state(),
        }

    def _restore(self, payload: dict[str, Any], path: Path) -> None:
        saved, current = payload["config"], self.cfg.to_flat()
        differ = sorted(k for k in set(saved) | set(current)
                        if k not in RUNTIME_KEYS and saved.get(k) != current.get(k))
        if differ:
            raise CheckpointError(f"{path}: the checkpoint was trained with a different config; "
                                  f"differing keys: {', '.join(differ)}")
        t = payload["trainer"]
        self.model.load_state_dict(payload["model"], strict=True)
        restore_model_counters(self.model, t)
        for name, p in self.model.named_parameters():
            p.requires_grad_(t["trainable"][name])
        self.optimizer.load_state_dict(payload["optimizer"])
        self.scheduler = restore_scheduler(self.optimizer, self.cfg, payload["scheduler"])
        if payload["scaler"] is not None:
            self.scaler.load_state_dict(payload["scaler"])
        self.stage, self.old_stage = t["stage"], t["old_stage"]
        self.switch_epoch, self.loss_mix = t["switch_epoch"], t["loss_mix"]
        self.unfreeze_done, self.stopped_early = t["unfreeze_done"], t["stopped_early"]
        self.skipped_batches = t["skipped_batches"]
        self.best_checkpoint = (path.parent / t["best_checkpoint"]) if t["best_checkpoint"] else None
        for stage, weights in t["criteria_weights"].items():
            self.criteria[stage].weights = StageWeights(**weights)
        self.selection.load_state_dict(payload["selection"])
        self.history = [dict(h) for h in payload["history"]]
        self.epoch = t["epoch"] + 1
        set_rng_state(payload["rng"])
        _log.info(f"resumed from {path} at epoch {self.epoch} (stage {self.stage})")
