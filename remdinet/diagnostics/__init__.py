"""``remdi-exp doctor``'s engine: an instrumented training slice and its checks (torch only).

``run_doctor(doctor_config(overrides))`` trains a short slice with the real trainer, observes it
through a callback and probes copies of the model, and returns a :class:`DoctorReport` of findings,
each naming the fix or correction switch that addresses it. The checks are registered in
:data:`.checks.CHECKS`, each in a module of its own that documents its thresholds; they read the
observers of :mod:`.gradients` (loss terms), :mod:`.lr`, :mod:`.freezing`, :mod:`.modes`
(train/eval), :mod:`.branches` (control flow) and :mod:`.clamps`.
"""
from .attribution import GOVERNED_BY, attribute
from .report import DoctorReport, Finding
from .runner import SLICE, DoctorCallback, doctor_config, run_doctor

__all__ = ["DoctorCallback", "DoctorReport", "Finding", "GOVERNED_BY", "SLICE", "attribute",
           "doctor_config", "run_doctor"]
