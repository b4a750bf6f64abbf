"""The doctor's extension point, as Optuna's ``BasePruner``: a :class:`Check` turns the record of
one :class:`~..observer.Observer` (the trainer hooks it needs) into the findings of one kind
(``name``, the findings' ``check``). Checks that read the same record share one observer, so a
costly observation (a backward pass per loss term) is made once.
"""
from __future__ import annotations

import itertools
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import ClassVar

from remdinet.config import Config
from remdinet.fixes import fixes_of

from ..observer import Observer
from ..report import Finding


class Check(ABC):
    """One kind of finding, computed from the record of one :class:`Observer`."""

    name: ClassVar[str]  # the ``check`` of its findings
    observer: ClassVar[type[Observer]]

    def __init__(self, observed: Observer, cfg: Config) -> None:
        self.observed = observed
        self.cfg = cfg
        self.fixset = fixes_of(cfg)

    @abstractmethod
    def findings(self) -> list[Finding]:
        """The findings, in report order."""


class StageCheck(Check):
    """A check that reports per training stage, of an observer with a ``stages`` mapping. Stage
    checks next to each other in the registry report together, stage by stage (every loss-term
    finding of stage 1, then of stage 2, ...)."""

    @abstractmethod
    def stage_findings(self, stage: int) -> list[Finding]:
        """The findings of one stage."""

    def findings(self) -> list[Finding]:
        return report([self])


def report(checks: Sequence[Check]) -> list[Finding]:
    """The findings of ``checks`` in their order, neighbouring stage checks interleaved."""
    out: list[Finding] = []
    for by_stage, group in itertools.groupby(checks, key=lambda c: isinstance(c, StageCheck)):
        if by_stage:
            group = list(group)
            stages = sorted({s for c in group for s in c.observed.stages})
            out += [f for s in stages for c in group for f in c.stage_findings(s)]
        else:
            out += [f for c in group for f in c.findings()]
    return out
