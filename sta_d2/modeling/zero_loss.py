"""The loss of a task allocated to no image."""
from typing import Iterable

import torch


def connected_zero(tensors: Iterable[torch.Tensor]) -> torch.Tensor:
    """An exact 0 that depends on every given tensor, so autograd and DDP reach them all."""
    return sum(t.sum() for t in tensors) * 0.0
