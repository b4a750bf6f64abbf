"""Findings of the doctor and their presentation (plain-text table, JSON-able dict).

A :class:`Finding` is one observation: which check made it, about what (``subject``), the measured
``value`` (a short string for the table) and ``data`` (the numbers behind it, for machines), whether
it is a defect (``severity``) and which fix or correction switch addresses it (``addressed_by``; the
exact sub-switch in ``switch``). ``severity``:

* ``flag``: a defect; any flag makes the doctor exit with code 1;
* ``note``: worth knowing but not a defect of the code (e.g. a term that needs a weights file the
  run does not have);
* ``ok``: the check ran and found nothing.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

SEVERITIES = ("flag", "note", "ok")
UNATTRIBUTED = "none"  # a flagged defect that no fix or correction switch governs


@dataclass
class Finding:
    check: str
    subject: str
    value: str
    severity: str
    detail: str = ""
    addressed_by: str | None = None
    switch: str | None = None
    data: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"finding {self.check}/{self.subject}: severity {self.severity!r} is "
                             f"not one of {SEVERITIES}")

    @property
    def flagged(self) -> bool:
        return self.severity == "flag"


@dataclass
class DoctorReport:
    label: str  # the fix set's label (corrected, all-on, -mask_unfreeze, ...)
    findings: list[Finding]
    info: dict[str, Any]  # the slice: config overrides, epochs, batches, seconds

    @property
    def flags(self) -> list[Finding]:
        return [f for f in self.findings if f.flagged]

    def flagged_switches(self) -> list[str]:
        """The distinct ``addressed_by`` names of the flags, in check order."""
        return list(dict.fromkeys(f.addressed_by or UNATTRIBUTED for f in self.flags))

    @property
    def exit_code(self) -> int:
        return 1 if self.flags else 0

    def summary(self) -> dict[str, str]:
        """Tags for a tracking run: ``doctor.flags`` (count) and ``doctor.flagged`` (switches)."""
        return {"doctor.flags": str(len(self.flags)),
                "doctor.flagged": ",".join(self.flagged_switches()) or "-"}

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "flags": len(self.flags),
                "flagged": self.flagged_switches(), "exit_code": self.exit_code,
                "info": self.info, "findings": [asdict(f) for f in self.findings]}

    def table(self, full: bool = False) -> str:
        """The findings as a plain-text table and a list of the flags' details.

        ``full`` lists every finding; otherwise flags and notes are listed and the findings of a
        check that found nothing are summed up in one ``ok`` row per check.
        """
        header = ("check", "subject", "value", "flag", "addressed by")
        body: list[tuple[str, ...]] = []
        for check in dict.fromkeys(f.check for f in self.findings):
            rows = [f for f in self.findings if f.check == check]
            shown = rows if full else [f for f in rows if f.severity != "ok"]
            body += [(f.check, f.subject, f.value, "FLAG" if f.flagged else f.severity,
                      (f.addressed_by or UNATTRIBUTED) if f.flagged else "") for f in shown]
            ok = len(rows) - len(shown)
            if ok:
                body.append((check, f"{'all' if ok == len(rows) else 'the other'} {ok}", "-", "ok",
                             ""))
        widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]

        def line(cells: tuple[str, ...]) -> str:
            return " | ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()

        text = [line(header), "-+-".join("-" * w for w in widths), *(line(r) for r in body), ""]
        flagged = self.flags
        text.append(f"doctor [{self.label}]: {len(flagged)} flag(s)"
                    + (f", addressed by {', '.join(self.flagged_switches())}" if flagged else
                       ", nothing flagged"))
        text += [f"  - {f.check} {f.subject}: {f.detail}" for f in flagged]
        return "\n".join(text)
