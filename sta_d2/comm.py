"""Cross-process reductions used by the trainer and the weighting methods."""
import torch
from detectron2.utils import comm


def all_average(x: torch.Tensor, differentiable: bool = False) -> torch.Tensor:
    """Mean of ``x`` over the processes (``x`` itself at world size 1). ``differentiable``: through
    ``torch.distributed.nn.functional.all_reduce``, for tensors built with ``create_graph``."""
    world = comm.get_world_size()
    if world == 1:
        return x
    if differentiable:
        from torch.distributed.nn.functional import all_reduce

        return all_reduce(x) / world
    x = x.clone()
    torch.distributed.all_reduce(x)
    return x / world
