"""Analyses of sta_d2 models: gradient angles under FT, STA and ISTA."""
from .gradient_angles import (
    KINDS,
    angle,
    gradient_angles,
    pair_names,
    pairwise_cosines,
    shared_step_gradient,
    shared_task_gradients,
)

__all__ = ["KINDS", "angle", "gradient_angles", "pair_names", "pairwise_cosines", "shared_step_gradient",
           "shared_task_gradients"]
