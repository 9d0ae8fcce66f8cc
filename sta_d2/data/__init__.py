"""Datasets (registered on import), the dense multi-task mapper, and synthetic data in the real
on-disk layouts."""
from . import datasets  # noqa: F401  (registration)
from .dense_mapper import DenseDatasetMapper, DenseResizeTransform
from .training_set import DATASET_INDEX_KEY, training_dataset_dicts
