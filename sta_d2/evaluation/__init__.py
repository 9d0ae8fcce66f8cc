"""Evaluators for sta_d2's datasets."""
from .build import build_evaluator, has_compiled_ops

__all__ = ["build_evaluator", "has_compiled_ops"]
