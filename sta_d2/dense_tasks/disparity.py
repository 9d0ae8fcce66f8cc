"""Disparity in pixels."""
import numpy as np

from .base import DENSE_TASK_REGISTRY, PositiveMapTask


@DENSE_TASK_REGISTRY.register()
class DisparityTask(PositiveMapTask):
    """Disparity (pixels of the image it comes with): float (1, H, W) targets, 0 = invalid; L1
    loss; ``abs_err`` and ``rel_err`` (see :class:`PositiveMapTask`). Resizing an image
    horizontally by a factor scales its disparities by the same factor."""

    name = "disparity"

    def transform(self, target, geometry):
        return super().transform(target, geometry) * np.float32(geometry.x_scale)
