"""The doctor's checks: the registered list :data:`CHECKS`, one private module per check (its
flag rule and thresholds in the module's docstring), over the observers of
:mod:`remdinet.diagnostics` (:mod:`.gradients`, :mod:`.lr`, :mod:`.freezing`, :mod:`.modes`,
:mod:`.branches`, :mod:`.clamps`). A new check is a :class:`Check` subclass in a module of its own,
added to :data:`CHECKS`.
"""
from ..observer import Observer, Step
from ._base import Check, StageCheck, report
from ._batch_dependence import BatchDependence
from ._branch import Branch
from ._clamp import ClampPressure
from ._dead_term import DeadTerm
from ._frozen_bn import FrozenBatchNorm
from ._gradient_reach import GradientReach
from ._input_gradient import InputGradient
from ._learning_rate import LearningRate
from ._loss_clamp import LossClamp
from ._supervision import Supervision
from ._train_eval import TrainEval
from ._trainable import Trainable

# The report's order.
CHECKS: tuple[type[Check], ...] = (
    GradientReach, DeadTerm, Supervision, LossClamp, LearningRate, Trainable, FrozenBatchNorm,
    TrainEval, InputGradient, BatchDependence, Branch, ClampPressure)

__all__ = ["CHECKS", "BatchDependence", "Branch", "Check", "ClampPressure", "DeadTerm",
           "FrozenBatchNorm", "GradientReach", "InputGradient", "LearningRate", "LossClamp",
           "Observer", "StageCheck", "Step", "Supervision", "TrainEval", "Trainable", "report"]
