"""``remdi-exp``: the experiment command line. Thin: every command parses its options and calls
the library (:mod:`.ablate`, :mod:`.study`, :mod:`.runs`, :mod:`.report`, :mod:`remdinet.evaluate`).

Errors of the user's input (config, study file, data, checkpoint) are caught here and only here,
printed as one line, exit code 2; anything else is a bug and propagates with its traceback.
"""
from __future__ import annotations

import importlib.metadata
import json
import signal
import sys
from contextlib import contextmanager
from enum import Enum
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Iterator, List, Optional

import optuna
import pandas as pd
import torch
import typer
from rich.console import Console

from remdinet.checkpoint import CheckpointError
from remdinet.config import ConfigError, parse_set_args
from remdinet.data import LAYOUTS, PAIRING_MODES, DataError
from remdinet.evaluate import evaluate_folder
from remdinet.fixes import FIXES, fixes_of
from remdinet.resolve import resolve

from . import ablate as ablate_mod
from . import catalog, configcmd
from . import dashboard as dashboard_mod
from . import known_bad
from . import doctor as doctor_mod
from . import study as study_mod
from . import verify as verify_mod
from . import versus as versus_mod
from .engine import (GRACE_PERIOD, HEARTBEAT_INTERVAL, WORKER_MEMORY_MB, WORKERS_PER_CORE,
                     EngineOptions, WorkersFailed, default_gpus, default_storage_url, parse_gpus)
from .cli_grammar import App, RootGroup
from .console import configure as configure_console, progress_to
from .presets import run_overrides
from .report import compare_view, rich_table, runs_frame, to_markdown, to_text
from .resume import resume_train
from .runs import TRAIN_EXPERIMENT, tracked_run
from .stores import mask_url
from .studyspec import load_spec
from .tracking import (UI_HOST, Tracker, quiet_loggers, resolve_tracking_uri, serve_ui,
                       ui_command)

USER_ERRORS = (ConfigError, DataError, CheckpointError)
# config keys that a flag of their own sets: a library error opening with the key names the flag
KEY_FLAGS = {"data.root": "--data"}


def _with_flag(message: str) -> str:
    key, sep, rest = message.partition(": ")
    return f"{KEY_FLAGS[key]} ({key}): {rest}" if sep and key in KEY_FLAGS else message

app = App(
    name="remdi-exp", no_args_is_help=True, add_completion=False, rich_markup_mode="markdown",
    cls=RootGroup,
    help="RemDiNet experiments: training, fix ablations, Optuna studies and MLflow tracking. "
         "Runs are tracked in ./mlruns/ (SQLite + artifacts) unless --tracking-uri says otherwise. "
         "A preset or study NAME is looked up in ./experiments/ or ./studies/ of the working "
         "directory first, then among the shipped ones (`remdi-exp presets` lists them).")
study_app = App(no_args_is_help=True, rich_markup_mode="markdown",
                help="Optuna studies defined in studies/NAME.toml.")
app.add_typer(study_app, name="study")
ablate_app = App(rich_markup_mode="markdown")
app.add_typer(ablate_app, name="ablate")
config_app = App(no_args_is_help=True, rich_markup_mode="markdown",
                 help="The config schema and a run's resolved config.")
app.add_typer(config_app, name="config")


@dataclass
class Globals:
    tracking_uri: str
    device: Optional[str]
    quiet: bool
    threads: Optional[int]

    def tracker(self) -> Tracker:
        return Tracker(self.tracking_uri)

    def apply(self) -> None:
        if self.threads is not None:
            torch.set_num_threads(self.threads)
        configure_console(self.quiet)
        if self.quiet:
            quiet_loggers()
            optuna.logging.set_verbosity(optuna.logging.WARNING)

    def update(self, name: str, value) -> None:
        """A global option given after the subcommand (:mod:`.cli_grammar`)."""
        setattr(self, name, resolve_tracking_uri(value) if name == "tracking_uri" else value)
        self.apply()


@contextmanager
def user_errors() -> Iterator[None]:
    """User-input errors as one line, exit 2; a stop by signal exits 128 + the signal (a second
    Ctrl-C, a bare KeyboardInterrupt, 130); worker processes that died exit 1."""
    try:
        yield
    except USER_ERRORS as exc:
        typer.echo(f"error: {_with_flag(str(exc))}", err=True)
        raise typer.Exit(2) from None
    except KeyboardInterrupt as exc:
        typer.echo(f"stopped: {str(exc) or type(exc).__name__}", err=True)
        raise typer.Exit(128 + getattr(exc, "signum", signal.SIGINT)) from None
    except WorkersFailed as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None


def _sets(set_: Optional[List[str]], skip_bad: bool) -> list[str]:
    return [*(set_ or ()), *(["data.skip_bad=true"] if skip_bad else [])]


# choices of `evaluate`, as enums so that Typer lists and checks them
EvalLayout = Enum("EvalLayout", [(n, n) for n in ("auto", "plain", *LAYOUTS)], type=str)
EvalSplit = Enum("EvalSplit", [(n, n) for n in ("train", "val", "test")], type=str)
Pairing = Enum("Pairing", [(n, n) for n in PAIRING_MODES], type=str)

PresetOpt = Annotated[Optional[str], typer.Option(
    "--preset", help="Preset name in experiments/ (tiny, quick, lol) or a path to a TOML file.")]
ConfigOpt = Annotated[Optional[Path], typer.Option(
    "--config", help="Config TOML file (same schema as the core config); overrides the preset.")]
SetOpt = Annotated[Optional[List[str]], typer.Option(
    "--set", help="Override one flat config key, KEY=VALUE (e.g. training.num_epochs=10); "
                  "repeatable; wins over --preset, --config and --data.")]
SkipBadOpt = Annotated[bool, typer.Option(
    "--skip-bad", help="Leave out unusable image files (corrupt, truncated, non-image, no ground "
                       "truth, size mismatch) instead of failing; each is logged, and the count "
                       "and list are recorded in MLflow (metric data.skipped, artifact "
                       "data/skipped.json). Same as --set data.skip_bad=true.")]
DataOpt = Annotated[Optional[Path], typer.Option(
    "--data", help="Dataset folder (sets data.root); omit for the embedded synthetic set.")]
DisableFixOpt = Annotated[Optional[List[str]], typer.Option(
    "--disable-fix", help=f"Fix (or fix.sub switch) to switch off on top of --profile; "
                          f"repeatable. Fixes: {', '.join(FIXES)}.")]
ProfileOpt = Annotated[Optional[str], typer.Option(
    "--profile", help="Fix profile: post_fix (all fixes on, the default), pre_fix (all off) "
                      "or corrected (all fixes and latent-bug corrections on).")]


def _print_version(value: Optional[bool]) -> None:
    if value:
        typer.echo(f"remdinet {importlib.metadata.version('remdinet')}")
        raise typer.Exit()


@app.callback()
def main_options(
    ctx: typer.Context,
    tracking_uri: Annotated[Optional[str], typer.Option(
        "--tracking-uri", help="MLflow tracking URI. Default: $MLFLOW_TRACKING_URI, else "
                               "sqlite:///CWD/mlruns/mlflow.db with artifacts in "
                               "CWD/mlruns/artifacts (CWD = the working directory).")] = None,
    device: Annotated[Optional[str], typer.Option(
        "--device", help="Training device: auto, cpu, cuda or cuda:N (sets training.device).")
    ] = None,
    quiet: Annotated[bool, typer.Option(
        "--quiet", "-q", help="Only results and errors: no per-epoch lines or library logs.")
    ] = False,
    threads: Annotated[Optional[int], typer.Option(
        "--threads", min=1, help="CPU threads for torch (default: torch's choice, one per core). "
                                 "On a busy machine 1 thread can be much faster than 2.")] = None,
    version: Annotated[Optional[bool], typer.Option(
        "--version", callback=_print_version, is_eager=True,
        help="Print the installed remdinet version and exit.")] = None,
) -> None:
    """Global options go before or after the command: remdi-exp --quiet ablate ... and
    remdi-exp ablate --quiet ... mean the same."""
    ctx.obj = Globals(resolve_tracking_uri(tracking_uri), device, quiet, threads)
    ctx.obj.apply()


# ------------------------------------------------------------------------------------------------
@app.command()
def train(
    ctx: typer.Context,
    config: ConfigOpt = None,
    preset: PresetOpt = None,
    set_: SetOpt = None,
    data: DataOpt = None,
    disable_fix: DisableFixOpt = None,
    profile: ProfileOpt = None,
    skip_bad: SkipBadOpt = False,
    resume: Annotated[Optional[str], typer.Option(
        "--resume", metavar="RUN_ID|PATH",
        help="Continue a stopped train run (KILLED or FAILED) in the same MLflow run: its run id "
             "(it resumes from RUN_DIR/checkpoints/last.pth) or a checkpoint file of it. The "
             "config is the checkpoint's: no --preset, --config, --data, --profile or "
             "--disable-fix; --set and --device "
             "may change only the device, loader workers, output folder and compile.")] = None,
) -> None:
    """Train one model and track it as a run of MLflow experiment 'train' (params = resolved
    config, per-epoch metrics, final PSNR/SSIM, sample grid, checkpoints in training.output_dir).

    Ctrl-C or SIGTERM: training stops at the end of the current epoch, after writing
    checkpoints/last.pth; the run ends KILLED (tag fail_reason) and the exit code is 130 (SIGINT)
    or 143 (SIGTERM). `--resume RUN_ID` continues it."""
    g: Globals = ctx.obj
    with user_errors():
        if resume is not None:
            if preset or config or data or profile or disable_fix:
                raise ConfigError("--resume continues with the checkpoint's config: --preset, "
                                  "--config, --data, --profile and --disable-fix cannot be given "
                                  "with it")
            outcome = resume_train(g.tracker(), resume,
                                   run_overrides(None, None, _sets(set_, skip_bad), None, g.device),
                                   quiet=g.quiet)
        else:
            cfg = resolve(run_overrides(preset, config, _sets(set_, skip_bad), data, g.device,
                                        doctor_mod.fix_overrides(profile, disable_fix or ())))
            known_bad.announce(cfg)
            tracker = g.tracker()
            exp_id = tracker.experiment_id(TRAIN_EXPERIMENT)
            fixset = fixes_of(cfg)
            tags = {**fixset.tags(), "variant": fixset.label(), "seed": cfg.training.seed}
            outcome = tracked_run(tracker, exp_id, cfg, f"train {fixset.label()}", tags,
                                  run_dir_root=Path(cfg.training.output_dir) / "train",
                                  quiet=g.quiet)
    metrics = ", ".join(f"{k} {v:.4f}" for k, v in outcome.final.items())
    typer.echo(f"run {outcome.run_id}: {metrics}; best checkpoint {outcome.result.best_checkpoint}")


@app.command()
def evaluate(
    ctx: typer.Context,
    checkpoint: Annotated[Path, typer.Option("--checkpoint", exists=True, dir_okay=False,
                                             help="Checkpoint file (.pth) written by training.")],
    data: Annotated[Path, typer.Option("--data", exists=True, file_okay=False,
                                       help="Dataset folder (or a plain image folder with "
                                            "--layout plain).")],
    out: Annotated[Optional[Path], typer.Option(
        "--out", help="Where enhanced PNGs and metrics.csv go (default: RUN_DIR/eval_SPLIT, "
                      "RUN_DIR = the folder above the checkpoint's folder).")
    ] = None,
    layout: Annotated[EvalLayout, typer.Option(
        help="Dataset layout (auto detects it), or plain: the images in --data, no metrics.")
    ] = EvalLayout.auto,
    split: Annotated[EvalSplit, typer.Option(help="Which split of the layout to enhance.")
                     ] = EvalSplit.test,
    pairing: Annotated[Pairing, typer.Option(help="Ground-truth pairing.")] = Pairing.flexible,
) -> None:
    """Enhance a dataset split with a checkpoint and print per-image PSNR/SSIM/MS-SSIM."""
    g: Globals = ctx.obj
    with user_errors():
        rows = evaluate_folder(checkpoint, data, out, layout=layout.value, split=split.value,
                               pairing=pairing.value, device=g.device or "auto", quiet=g.quiet)
    table = pd.DataFrame(rows).drop(columns=["output"])
    typer.echo(to_text(table, ".4f"))
    means = [f"{m} {table[m].dropna().mean():.4f}" for m in ("psnr", "ssim", "ms_ssim")
             if table[m].notna().any()]
    typer.echo("mean: " + (", ".join(means) or "no image has a ground truth"))


def _band(text: str) -> tuple[float, float]:
    parts = text.split(",")
    try:
        lo, hi = (float(p) for p in parts)
    except ValueError:
        raise typer.BadParameter(f"expected LOW,HIGH in dB (e.g. 18,19), got {text!r}") from None
    if lo > hi:
        raise typer.BadParameter(f"low {lo} exceeds high {hi}")
    return lo, hi


OutOpt = Annotated[Optional[Path], typer.Option("--out", help="Write the table as .csv or .md.")]
StorageOpt = Annotated[Optional[str], typer.Option(
    "--storage", help="Optuna storage URL (any SQLAlchemy RDB URL). Default: "
                      "sqlite:///CWD/mlruns/optuna.db (CWD = the working directory), which serves "
                      "the workers of one machine; with workers on several machines use "
                      "PostgreSQL: postgresql://USER@HOST:PORT/DB (the password from ~/.pgpass or "
                      "$PGPASSWORD, so that it appears in no command line).")]


WorkersOpt = Annotated[Optional[int], typer.Option(
    "--workers", min=1, help="Worker processes on this machine, each training one trial at a "
                             "time (torch threads: --threads, default the CPUs shared out). "
                             "Default: 1, or GPUs x --workers-per-gpu on a CUDA machine. The "
                             "same command on other machines (same --storage and --tracking-uri) "
                             "joins.")]
GpusOpt = Annotated[Optional[str], typer.Option(
    "--gpus", help="CUDA devices the workers are pinned to, round robin (CUDA_VISIBLE_DEVICES "
                   "per worker), e.g. 0,1,2,3. Default on a CUDA machine: every visible device.")]
WorkersPerGpuOpt = Annotated[int, typer.Option(
    "--workers-per-gpu", min=1, help="Workers per GPU when --workers is not given.")]
JoinOpt = Annotated[bool, typer.Option(
    "--join", help="Add no work: take the trials other commands queued (it must exist).")]
HeartbeatOpt = Annotated[int, typer.Option(
    "--heartbeat-interval", min=1, help="Seconds between a running trial's heartbeats.")]
GraceOpt = Annotated[int, typer.Option(
    "--grace-period", min=2, help="Seconds without a heartbeat after which a running trial counts "
                                  "as dead (worker killed, machine lost): it is failed and "
                                  "retried once, resuming from its last checkpoint.")]
ForceOpt = Annotated[bool, typer.Option(
    "--force", help=f"Start the --workers even when they are more than this machine's cores "
                    f"(over {WORKERS_PER_CORE} per core) or memory (about {WORKER_MEMORY_MB} MB "
                    f"each) suit.")]


def _engine_options(g: Globals, workers: Optional[int], gpus: Optional[str], workers_per_gpu: int,
                    **kwargs) -> EngineOptions:
    devices = parse_gpus(gpus)
    if devices is None:
        devices = default_gpus(g.device or "auto")
    if workers is None:
        workers = len(devices) * workers_per_gpu if devices else 1
    return EngineOptions(workers=workers, gpus=devices, threads=g.threads, quiet=g.quiet or
                         workers > 1, quiet_logs=g.quiet, **kwargs)


@ablate_app.callback(invoke_without_command=True)
def ablate(
    ctx: typer.Context,
    preset: PresetOpt = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    data: DataOpt = None,
    disable_fix: Annotated[Optional[List[str]], typer.Option(
        "--disable-fix", help=f"Fix (or fix.sub switch) to ablate; repeatable. Fixes: "
                              f"{', '.join(FIXES)}. Default: every fix.")] = None,
    grid: Annotated[str, typer.Option(
        "--grid", help="leave-one-out: all-on without each fix; full: without every subset; "
                       "none: all-on without all --disable-fix at once. all-on and all-off "
                       "(pre-fix) always run.")] = "leave-one-out",
    name: Annotated[Optional[str], typer.Option(
        "--name", help="Ablation name in the storage (default: PRESET-GRID[-FIXES]); the same "
                       "name resumes it: finished cells are not trained again.")] = None,
    seeds: Annotated[int, typer.Option(
        "--seeds", min=1, help="Seeds per variant (training.seed, +1, ...); raising it later "
                               "trains only the new seeds.")] = 1,
    until_resolved: Annotated[bool, typer.Option(
        "--until-resolved", help="After each round, give one more seed to every variant whose "
                                 "95 % interval of ΔPSNR still contains 0 and is wider than "
                                 "--resolution, up to --max-seeds.")] = False,
    max_seeds: Annotated[int, typer.Option(
        "--max-seeds", min=2, help="Most seeds per variant with --until-resolved.")] = 10,
    resolution: Annotated[float, typer.Option(
        "--resolution", help="dB: an interval within ±this around 0 means 'no effect "
                             "detected'; with --until-resolved, a narrower interval stops.")
    ] = ablate_mod.RESOLUTION,
    reference_psnr: Annotated[float, typer.Option(
        "--reference-psnr", help="Reference PSNR (dB) drawn on the chart.")
    ] = ablate_mod.REFERENCE_PSNR,
    reference_band: Annotated[str, typer.Option(
        "--reference-band", help="Pre-fix baseline band LOW,HIGH in dB; the table says where each "
                                 "variant falls.")
    ] = "{:g},{:g}".format(*ablate_mod.REFERENCE_BAND),
    include_corrected: Annotated[bool, typer.Option(
        "--include-corrected", help="Also run the 'corrected' profile (every fix and latent-bug "
                                    "correction on).")] = False,
    out: Annotated[Optional[Path], typer.Option(
        "--out", help="Also write ablation.csv/.md/.png and ablation_runs.csv to this folder.")
    ] = None,
    doctor: Annotated[bool, typer.Option(
        "--doctor", help="First run `doctor` on every variant (about a minute each with the quick "
                         "preset) and tag its training runs with doctor.flags / doctor.flagged.")
    ] = False,
    skip_bad: SkipBadOpt = False,
    storage: StorageOpt = None,
    workers: WorkersOpt = None,
    gpus: GpusOpt = None,
    workers_per_gpu: WorkersPerGpuOpt = 1,
    join: JoinOpt = False,
    heartbeat_interval: HeartbeatOpt = HEARTBEAT_INTERVAL,
    grace_period: GraceOpt = GRACE_PERIOD,
    force: ForceOpt = False,
    keep_checkpoints: Annotated[bool, typer.Option(
        "--keep-checkpoints/--no-keep-checkpoints", help="Keep each cell's checkpoints (its "
                                                         "best model) after it finishes.")
    ] = True,
) -> None:
    """Fix ablation: every variant x seed is a cell, trained as an MLflow child run under one
    parent run (experiment 'ablations') by --workers processes here and any machine that
    --joins; then the table with paired statistics (Δ vs all-on by seed, 95 % interval, Holm
    p, verdict) and a forest plot. Running it again resumes: only unfinished cells train.
    `remdi-exp ablate show NAME` prints the current table."""
    if ctx.invoked_subcommand is not None:
        return
    g: Globals = ctx.obj
    band = _band(reference_band)
    with user_errors():
        variants = ablate_mod.build_variants(disable_fix or (), grid, include_corrected)
        base = run_overrides(preset, config, _sets(set_, skip_bad), data, g.device)
        options = _engine_options(g, workers, gpus, workers_per_gpu, join=join, force=force,
                                  heartbeat_interval=heartbeat_interval,
                                  grace_period=grace_period, keep_checkpoints=keep_checkpoints)
        plan = ablate_mod.Seeds(seeds, until_resolved, max_seeds, resolution)
        label = name or ablate_mod.ablation_name(preset, grid, disable_fix or (),
                                                 include_corrected)
        url = storage or default_storage_url(g.tracking_uri)
        result = ablate_mod.run_ablation(base, variants, label, url, g.tracking_uri, options, plan,
                                         grid, reference_psnr, band, out, doctor=doctor)
    typer.echo(f"ablation {result.name}: parent run {result.parent_run_id} (experiment "
               f"'{ablate_mod.EXPERIMENT}')")


@ablate_app.command("show")
def ablate_show(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="NAME", help="Ablation name in the storage.")],
    storage: StorageOpt = None,
    resolution: Annotated[float, typer.Option(
        "--resolution", help="dB: an interval within ±this around 0 means 'no effect detected'.")
    ] = ablate_mod.RESOLUTION,
    reference_band: Annotated[str, typer.Option(
        "--reference-band", help="Pre-fix baseline band LOW,HIGH in dB.")
    ] = "{:g},{:g}".format(*ablate_mod.REFERENCE_BAND),
    out: OutOpt = None,
) -> None:
    """Print the current table of a running or finished ablation (from every finished cell)."""
    g: Globals = ctx.obj
    band = _band(reference_band)
    with user_errors():
        table, counts = ablate_mod.show_ablation(
            name, storage or default_storage_url(g.tracking_uri), band, resolution)
        _write_table(table, out)
    typer.echo("cells: " + ", ".join(f"{n.lower()} {c}" for n, c in counts.items() if c))
    if table.empty:
        typer.echo("no finished cell yet")
        return
    typer.echo(to_text(table[list(ablate_mod.SHOWN_COLUMNS)], ".3f"))


@app.command()
def doctor(
    ctx: typer.Context,
    preset: PresetOpt = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    data: DataOpt = None,
    disable_fix: DisableFixOpt = None,
    profile: ProfileOpt = None,
    skip_bad: SkipBadOpt = False,
    json_: Annotated[bool, typer.Option(
        "--json", help="Print the JSON report to stdout instead of the table.")] = False,
) -> None:
    """Diagnose a configuration: train a short instrumented slice (6 epochs of a few 64-px batches
    covering all three stages) and check gradient reach per loss term, learning rates, frozen and
    trainable blocks, train/eval divergence, non-differentiable control flow and clamp pressure.
    Each finding names the fix or correction that addresses it. Tracked as a run of MLflow
    experiment 'doctor' (doctor.json artifact, tags doctor.flags / doctor.flagged).
    Exit code 0: nothing flagged; 1: something flagged; 2: bad input."""
    g: Globals = ctx.obj
    progress_to("stderr")  # stdout is the report's (--json)
    with user_errors():
        base = run_overrides(preset, config, (), data, g.device)
        explicit = {**parse_set_args(_sets(set_, skip_bad)),
                    **doctor_mod.fix_overrides(profile, disable_fix or ())}
        outcome = doctor_mod.tracked_doctor(g.tracker(), base, explicit)
    report = outcome.report
    if json_:
        typer.echo(json.dumps({**report.to_dict(), "run_id": outcome.run_id}, indent=2))
    else:
        typer.echo(report.table())
        typer.echo(f"run {outcome.run_id} (experiment '{doctor_mod.EXPERIMENT}'), "
                   f"{report.info['seconds']:.0f} s")
    raise typer.Exit(report.exit_code)


# ------------------------------------------------------------------------------------------------
@study_app.command("run")
def study_run(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(
        metavar="NAME", help="Study name: studies/NAME.toml (or a path to a TOML).")],
    storage: StorageOpt = None,
    n_trials: Annotated[Optional[int], typer.Option(
        "--n-trials", help="Trials to add in this invocation (default: [study] n_trials).")
    ] = None,
    timeout: Annotated[Optional[float], typer.Option(
        "--timeout", help="Stop starting trials after this many seconds (default: [study] "
                          "timeout).")] = None,
    preset: PresetOpt = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    data: DataOpt = None,
    export: Annotated[Optional[Path], typer.Option(
        "--export", help="Write the best trial's full config TOML here (with --verify-top: the "
                         "verified winner's, if any).")] = None,
    pick: Annotated[Optional[str], typer.Option(
        "--pick", metavar="METRIC", help="Multi-objective study: the objective (psnr, ssim, "
                                         "ms_ssim) whose best trial on the Pareto front "
                                         "--export writes; required with --export there.")
    ] = None,
    keep_checkpoints: Annotated[bool, typer.Option(
        "--keep-checkpoints", help="Keep every trial's checkpoint files (default: deleted after "
                                   "the trial; the best config is exported instead).")] = False,
    doctor: Annotated[bool, typer.Option(
        "--doctor", help="Run `doctor` on every trial's config before training it and tag the "
                         "trial's run with doctor.flags / doctor.flagged.")] = False,
    skip_bad: SkipBadOpt = False,
    workers: WorkersOpt = None,
    gpus: GpusOpt = None,
    workers_per_gpu: WorkersPerGpuOpt = 1,
    join: JoinOpt = False,
    heartbeat_interval: HeartbeatOpt = HEARTBEAT_INTERVAL,
    grace_period: GraceOpt = GRACE_PERIOD,
    force: ForceOpt = False,
    verify_top: Annotated[int, typer.Option(
        "--verify-top", min=0, help="Afterwards retrain the K best trials and the baseline on "
                                    "--verify-seeds fresh seeds (`study verify`).")] = 0,
    verify_seeds: Annotated[int, typer.Option(
        "--verify-seeds", min=1, help="Fresh seeds per candidate for --verify-top.")] = 3,
) -> None:
    """Run or resume (same NAME) an Optuna study; every trial is an MLflow child run of the
    study's parent run (experiment = study name). Prints the best trial, exports the best config,
    logs importances and plots.

    Ctrl-C or SIGTERM: the running trials stop at the end of their current epoch and are queued
    for a retry that resumes from their checkpoint; exit code 130 (SIGINT) or 143 (SIGTERM). A
    worker process that dies (e.g. SIGKILL) has its trial retried by the other workers after the
    grace period; the command then exits 1."""
    g: Globals = ctx.obj
    with user_errors():
        overrides = run_overrides(None, config, _sets(set_, skip_bad), data, g.device)
        spec = load_spec(name, preset=preset, overrides=overrides)
        options = _engine_options(g, workers, gpus, workers_per_gpu, join=join, timeout=timeout,
                                  force=force,
                                  heartbeat_interval=heartbeat_interval,
                                  grace_period=grace_period, keep_checkpoints=keep_checkpoints,
                                  doctor=doctor)
        url = storage or default_storage_url(g.tracking_uri)
        outcome = study_mod.run_study(spec, url, g.tracking_uri, options, n_trials=n_trials,
                                      export=None if verify_top else export, pick=pick)
        typer.echo(f"study {outcome.name}: parent run {outcome.parent_run_id} (experiment "
                   f"'{outcome.name}'), {len(outcome.trials)} trial(s) in total")
        if verify_top:
            _verify(spec, url, g, options, verify_top, verify_seeds, export)


def _verify(spec, storage_url: str, g: Globals, options: EngineOptions, top: int, seeds: int,
            export: Optional[Path]) -> None:
    verify_options = EngineOptions(**{**options.__dict__, "join": False, "timeout": None,
                                      "doctor": False})
    result = verify_mod.verify_study(spec, storage_url, g.tracking_uri, verify_options, top,
                                     seeds, export)
    typer.echo(f"verification {result.name}: parent run {result.parent_run_id}")


@study_app.command("verify")
def study_verify(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(
        metavar="NAME", help="Study name: studies/NAME.toml (or a path to a TOML), already run.")],
    top: Annotated[int, typer.Option("--top", min=1, help="How many of the best trials.")] = 3,
    seeds: Annotated[int, typer.Option(
        "--seeds", min=1, help="Fresh seeds per candidate (training.seed + 1, + 2, ...).")] = 3,
    storage: StorageOpt = None,
    preset: PresetOpt = None,
    set_: SetOpt = None,
    data: DataOpt = None,
    export: Annotated[Optional[Path], typer.Option(
        "--export", help="Write the verified winner's config TOML here (nothing when no "
                         "candidate beats the baseline).")] = None,
    workers: WorkersOpt = None,
    gpus: GpusOpt = None,
    workers_per_gpu: WorkersPerGpuOpt = 1,
    heartbeat_interval: HeartbeatOpt = HEARTBEAT_INTERVAL,
    grace_period: GraceOpt = GRACE_PERIOD,
    force: ForceOpt = False,
) -> None:
    """Retrain the study's baseline and its K best trials on N fresh seeds as paired cells;
    print each candidate's Δ vs the baseline with its 95 % interval, Holm p and verdict. Running
    it again trains only what is missing."""
    g: Globals = ctx.obj
    with user_errors():
        overrides = run_overrides(None, None, _sets(set_, False), data, g.device)
        spec = load_spec(name, preset=preset, overrides=overrides)
        options = _engine_options(g, workers, gpus, workers_per_gpu, force=force,
                                  heartbeat_interval=heartbeat_interval, grace_period=grace_period)
        _verify(spec, storage or default_storage_url(g.tracking_uri), g, options, top, seeds,
                export)


@study_app.command("show")
def study_show(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="NAME", help="Study name in the storage.")],
    storage: StorageOpt = None,
    out: OutOpt = None,
) -> None:
    """Print the trials of a study (state, values, params, MLflow run id) from Optuna storage."""
    g: Globals = ctx.obj
    with user_errors():
        study = study_mod.load_study(name, storage or default_storage_url(g.tracking_uri))
        table = study_mod.trials_frame(study)
        _write_table(table, out)
    typer.echo(to_text(table, ".4f"))


@app.command()
def versus(
    ctx: typer.Context,
    contenders: Annotated[List[str], typer.Argument(
        metavar="BASELINE CANDIDATE...",
        help="Presets (names or TOML paths), each optionally PRESET@PROFILE (sets fixes.profile), "
             "e.g. quick@corrected recipe. The first is the baseline.")],
    seeds: Annotated[int, typer.Option(
        "--seeds", min=1, help="Seeds per contender (the baseline's training.seed, +1, ...); "
                               "raising it later trains only the new seeds.")] = 3,
    name: Annotated[Optional[str], typer.Option(
        "--name", help="Name in the storage (default: A-vs-B); the same name resumes it.")] = None,
    set_: SetOpt = None,
    data: DataOpt = None,
    storage: StorageOpt = None,
    workers: WorkersOpt = None,
    gpus: GpusOpt = None,
    workers_per_gpu: WorkersPerGpuOpt = 1,
    heartbeat_interval: HeartbeatOpt = HEARTBEAT_INTERVAL,
    grace_period: GraceOpt = GRACE_PERIOD,
    force: ForceOpt = False,
    keep_checkpoints: Annotated[bool, typer.Option(
        "--keep-checkpoints", help="Keep each cell's checkpoints (default: deleted when the cell "
                                   "ends), e.g. to evaluate or show the models afterwards.")] = False,
) -> None:
    """Train configurations on the same seeds and compare each with the first, paired by seed:
    Δ PSNR/SSIM with 95 % interval, Holm p and verdict (MLflow experiment 'versus'). The
    contenders must validate on the same images. Running it again trains only missing cells."""
    g: Globals = ctx.obj
    with user_errors():
        sets = _sets(set_, False)
        parsed = [versus_mod.parse_contender(c, sets, data, g.device) for c in contenders]
        options = _engine_options(g, workers, gpus, workers_per_gpu, force=force,
                                  heartbeat_interval=heartbeat_interval, grace_period=grace_period,
                                  keep_checkpoints=keep_checkpoints)
        result = versus_mod.run_versus(parsed, seeds, storage or default_storage_url(g.tracking_uri),
                                       g.tracking_uri, options, name)
    typer.echo(f"versus {result.name}: parent run {result.parent_run_id} "
               f"({result.seconds:.0f} s)")


# ------------------------------------------------------------------------------------------------
def _write_table(table: pd.DataFrame, out: Optional[Path]) -> None:
    if out is None:
        return
    if out.suffix not in (".csv", ".md"):
        raise ConfigError(f"--out {out}: the file name must end in .csv or .md")
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".csv":
        table.to_csv(out, index=False)
    else:
        out.write_text(to_markdown(table, ".4f"), encoding="utf-8")


def _tag_filter(items: List[str]) -> str:
    clauses = []
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--filter-tag expects KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        if "'" in value or "`" in key:
            raise ConfigError(f"--filter-tag {item!r}: quotes cannot be matched")
        clauses.append(f"tags.`{key.strip()}` = '{value.strip()}'")
    return " and ".join(clauses)


@app.command()
def compare(
    ctx: typer.Context,
    experiment: Annotated[str, typer.Argument(
        metavar="EXPERIMENT", help="MLflow experiment name (ablations, train, a study name).")],
    filter_tag: Annotated[Optional[List[str]], typer.Option(
        "--filter-tag", help="Keep runs whose tag KEY equals VALUE (KEY=VALUE); repeatable.")
    ] = None,
    params: Annotated[bool, typer.Option(
        "--params/--no-params", help="Include the params.* columns (the full config) in --out, "
                                     "and those that differ between the runs in the table.")
    ] = True,
    columns: Annotated[Optional[str], typer.Option(
        "--columns", metavar="NAME,NAME,...",
        help="Show these columns, in this order (exact names, as in the header of --out FILE.csv: "
             "run_name, tags.variant, params.training.seed, metrics.final_psnr, ...); with --out "
             "the file holds them too. Default: run name, status, the params that differ between "
             "the runs, final/best/last val PSNR and SSIM, epochs run, run id.")] = None,
    sort: Annotated[Optional[str], typer.Option(
        "--sort", metavar="[-]COLUMN",
        help="Order the runs by COLUMN, ascending; a leading - sorts descending "
             "(--sort -metrics.final_psnr: best first). Missing values go last.")] = None,
    out: OutOpt = None,
) -> None:
    """Runs of an MLflow experiment as a table: a terminal table on a terminal, plain text
    otherwise; --out writes every column (tags, params, metrics) unless --columns picks some. Runs
    left RUNNING by a process that is gone are closed KILLED first (unless the store is
    read-only)."""
    g: Globals = ctx.obj
    with user_errors():
        tracker = Tracker(g.tracking_uri, writes=False)
        exp = tracker.client.get_experiment_by_name(experiment)
        if exp is None:
            names = [e.name for e in tracker.client.search_experiments()]
            raise ConfigError(f"no MLflow experiment {experiment!r} in "
                              f"{mask_url(g.tracking_uri)}; experiments: "
                              f"{', '.join(names) or 'none'}")
        runs = tracker.client.search_runs([exp.experiment_id],
                                          filter_string=_tag_filter(filter_tag or []),
                                          max_results=50_000)
        table, shown = compare_view(runs_frame(runs, include_params=params), columns, sort)
        _write_table(table[shown] if columns else table, out)
    if table.empty and filter_tag:
        # like grep: a filter that matches nothing is exit 1, so that scripts notice a typo
        typer.echo(f"error: no run of experiment {experiment!r} matches --filter-tag "
                   f"{' '.join(filter_tag)}", err=True)
        raise typer.Exit(1)
    if table.empty:
        typer.echo("no runs")
        return
    console = Console()
    if console.is_terminal:
        console.print(rich_table(table[shown]))
    else:
        typer.echo(to_text(table[shown], ".4f"))


@app.command()
def ui(
    ctx: typer.Context,
    port: Annotated[int, typer.Option("--port", help="Port to serve on.")] = 5000,
    host: Annotated[str, typer.Option(
        "--host", help="Address to bind: 127.0.0.1 (this machine only), or 0.0.0.0 to serve the "
                       "network (anyone who reaches the port sees and can change the runs).")
    ] = UI_HOST,
) -> None:
    """Start the MLflow UI over the project's tracking store (foreground; Ctrl-C stops it and
    every process it started). Runs left RUNNING by a process that is gone are closed KILLED
    first."""
    g: Globals = ctx.obj
    with user_errors():
        Tracker(g.tracking_uri, writes=False)  # checks the store; closes abandoned runs
    cmd, env = ui_command(g.tracking_uri, port, host)
    typer.echo(f"MLflow UI at http://{host}:{port} over {mask_url(g.tracking_uri)}")
    raise typer.Exit(serve_ui(cmd, env))


@app.command()
def dashboard(
    ctx: typer.Context,
    storage: StorageOpt = None,
    host: Annotated[str, typer.Option("--host", help="Address to serve on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to serve on.")] = 8080,
) -> None:
    """Start optuna-dashboard over the project's Optuna storage (studies, ablations and
    verifications; foreground, Ctrl-C stops it). Needs the optional extra:
    pip install 'remdinet[dashboard]'."""
    g: Globals = ctx.obj
    with user_errors():
        dashboard_mod.serve(storage or default_storage_url(g.tracking_uri), host, port)


@app.command()
def presets() -> None:
    """List the presets (--preset NAME) and study spaces (study run NAME) with their
    descriptions. Files in ./experiments/ and ./studies/ of the working directory override the
    shipped ones of the same name."""
    console = Console()
    with user_errors():
        for kind in catalog.KINDS:
            console.print(catalog.table(kind))


@config_app.command("show")
def config_show(
    ctx: typer.Context,
    preset: PresetOpt = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    data: DataOpt = None,
    disable_fix: DisableFixOpt = None,
    profile: ProfileOpt = None,
) -> None:
    """Print the resolved config (every key) as TOML, exactly as `train` would resolve these
    options: save it and pass it back with `train --config FILE`."""
    g: Globals = ctx.obj
    with user_errors():
        overrides = run_overrides(preset, config, set_ or (), data, g.device,
                                  doctor_mod.fix_overrides(profile, disable_fix or ()))
        typer.echo(configcmd.resolved_toml(overrides), nl=False)


@config_app.command("keys")
def config_keys(
    section: Annotated[Optional[str], typer.Argument(
        metavar="[SECTION]", help="Only this section's keys (e.g. training, clamps).")] = None,
) -> None:
    """List every config key (section.key, as --set and study spaces address it) with its type,
    allowed values, default and doc."""
    with user_errors():
        Console().print(configcmd.keys_table(section))


def main() -> None:
    app(prog_name="remdi-exp")


if __name__ == "__main__":
    sys.exit(main())
