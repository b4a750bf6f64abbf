"""``remdi-exp doctor``: the diagnostics slice (:mod:`remdinet.diagnostics`) as a tracked MLflow run
of experiment ``doctor``: the resolved slice config as params, the report as the JSON artifact
``doctor.json`` (and the table as ``doctor.txt``), tags ``doctor.flags`` (count) and
``doctor.flagged`` (the switches that address the flags, comma-separated).

Ablations and studies run it per variant (``ablate --doctor``, ``study run --doctor``) and copy its
summary tags onto the variant's own run.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Sequence

from remdinet.config import ConfigError, did_you_mean
from remdinet.data import build_data
from remdinet.diagnostics import DoctorReport, doctor_config, run_doctor
from remdinet.fixes import PROFILES, expand, fixes_of
from remdinet.train import resolve_device

from .stopping import StopAtEpochEnd, StopRequest
from .tracking import Tracker

EXPERIMENT = "doctor"
ARTIFACT = "doctor.json"


@dataclass
class DoctorOutcome:
    run_id: str
    report: DoctorReport


def fix_overrides(profile: str | None, disable: Sequence[str]) -> dict[str, Any]:
    """``fixes.*`` overrides for ``--profile`` and ``--disable-fix`` (names checked here)."""
    out: dict[str, Any] = {}
    if profile is not None:
        if profile not in PROFILES:
            raise ConfigError(f"unknown --profile {profile!r}{did_you_mean(profile, PROFILES) or ';'}"
                              f" valid: {', '.join(PROFILES)}")
        out["fixes.profile"] = profile
    if disable:
        for name in disable:
            expand(name)
        out["fixes.disable"] = list(dict.fromkeys(disable))
    return out


def tracked_doctor(tracker: Tracker, overrides: dict[str, Any], explicit: dict[str, Any] | None = None,
                   tags: dict[str, Any] | None = None) -> DoctorOutcome:
    """Run the doctor slice of ``overrides`` (+ ``explicit`` ``--set`` items, which win over the
    slice schedule) inside a run of experiment ``doctor``; the run ends FINISHED whatever the
    findings (the flags are the result, not a failure). The first SIGINT/SIGTERM stops the slice
    at the end of its current epoch (:mod:`.stopping`): the run ends KILLED, without a report."""
    cfg = doctor_config(overrides, explicit)
    fixset = fixes_of(cfg)
    # input errors are found before the run exists, so that they leave no FAILED run behind
    resolve_device(cfg.training.device)
    data = build_data(cfg)
    exp_id = tracker.experiment_id(EXPERIMENT)
    run_tags = {**fixset.tags(), "variant": fixset.label(), **(tags or {})}
    with StopRequest() as stop, \
            tracker.active_run(exp_id, f"doctor {fixset.label()}", run_tags) as run_id:
        tracker.log_params(run_id, cfg.to_flat())
        report = run_doctor(cfg, data=data, callbacks=[StopAtEpochEnd(stop)])
        tracker.set_tags(run_id, report.summary())
        tracker.log_metrics(run_id, {"doctor_flags": len(report.flags),
                                     "doctor_seconds": report.info["seconds"]})
        tracker.log_text(run_id, json.dumps(report.to_dict(), indent=2), ARTIFACT)
        tracker.log_text(run_id, report.table(full=True), "doctor.txt")
    return DoctorOutcome(run_id, report)


def summary_tags(outcome: DoctorOutcome) -> dict[str, str]:
    """The tags a variant's own run carries: the doctor's summary and its run id."""
    return {**outcome.report.summary(), "doctor.run_id": outcome.run_id}
