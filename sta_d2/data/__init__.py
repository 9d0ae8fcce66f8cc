"""Datasets (registered on import), the mappers (R-CNN's checked one, the dense multi-task one)
and synthetic data in the real on-disk layouts."""
from . import datasets  # noqa: F401  (registration)
from .checked_mapper import CheckedDatasetMapper
from .dense_mapper import DenseDatasetMapper, DenseResizeTransform
from .training_set import DATASET_INDEX_KEY, training_dataset_dicts
from .train_loader import StreamBatchSampler, build_stream_train_loader
