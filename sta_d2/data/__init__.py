"""Datasets (registered on import) and synthetic data in the real on-disk layouts."""
from . import datasets  # noqa: F401  (registration)
