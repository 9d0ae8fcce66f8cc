"""Evaluators for sta_d2's datasets."""
from .build import build_evaluator, has_compiled_ops
from .dense import DenseMultiTaskEvaluator, build_dense_evaluator
from .multitask_gain import (
    DELTA_M_CONVENTIONS,
    load_baselines,
    lower_is_better,
    multi_task_gain,
    select_delta_m_metrics,
)

__all__ = [
    "build_evaluator",
    "has_compiled_ops",
    "DenseMultiTaskEvaluator",
    "build_dense_evaluator",
    "DELTA_M_CONVENTIONS",
    "load_baselines",
    "lower_is_better",
    "multi_task_gain",
    "select_delta_m_metrics",
]
