"""Dense prediction tasks, one descriptor each (see :class:`DenseTask`), registered on import in
:data:`DENSE_TASK_REGISTRY`. Data, models, evaluation and reports ask the descriptors, so a new
dense task is a registered subclass of :class:`DenseTask`.

The package imports nothing of sta_d2: data, modeling and evaluation sit above it and all ask it.
"""
from .base import (
    DENSE_TASK_REGISTRY,
    DenseTask,
    Geometry,
    PositiveMapTask,
    build_dense_task,
    dense_task_names,
    get_dense_task,
)
from .sem_seg import SemSegTask
from .depth import DepthTask
from .disparity import DisparityTask
from .normal import NormalTask
