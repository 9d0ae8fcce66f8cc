"""Per-task gradients for the gradient-based methods (PCGrad, MGDA-UB, GradNorm, CosReg).

Only the tasks of ``step.active`` are differentiated: an absent task's loss is an exact zero, its
gradient a zero vector that would distort any combination. Under DDP every process holds the
gradients of its own sub-batch; :func:`sta_d2.comm.all_average` averages a per-task quantity across processes
(the stacked per-task gradient matrix, or a Gram matrix) before it is combined, so that every
process combines the same gradients and takes the same step. At world size 1 it is a no-op.
"""
from typing import Dict, List, Sequence, Tuple

import torch
from detectron2.utils.events import get_event_storage
from torch import nn

from ..comm import all_average


def split_parameters(model) -> Tuple[List[nn.Parameter], List[nn.Parameter]]:
    """(shared, task-specific) trainable parameters of a multi-task model; task-specific is every
    trainable parameter that ``model.shared_parameters()`` does not list."""
    shared = list(model.shared_parameters())
    ids = {id(p) for p in shared}
    return shared, [p for p in model.parameters() if p.requires_grad and id(p) not in ids]


def task_gradients(losses: Sequence[torch.Tensor], inputs: Sequence[torch.Tensor], create_graph: bool = False,
                   average: bool = True) -> Tuple[torch.Tensor, List[bool]]:
    """Per-loss gradients w.r.t. ``inputs``, flattened and stacked: (len(losses), total numel),
    averaged across processes unless ``average`` is False (gradients w.r.t. activations, which
    differ per process). Inputs a loss does not reach get zeros; the second value tells, per
    input, whether any loss reached it. The graph is kept for later backward passes."""
    rows, reached = [], [False] * len(inputs)
    for loss in losses:
        grads = [None] * len(inputs)
        if loss.requires_grad:
            grads = torch.autograd.grad(loss, inputs, retain_graph=True, create_graph=create_graph, allow_unused=True)
        reached = [r or g is not None for r, g in zip(reached, grads)]
        rows.append(torch.cat([(torch.zeros_like(x) if g is None else g).reshape(-1) for g, x in zip(grads, inputs)]))
    if not rows:
        return torch.zeros(0, sum(x.numel() for x in inputs), device=inputs[0].device), reached
    rows = torch.stack(rows)
    return (all_average(rows, differentiable=create_graph) if average else rows), reached


def accumulate_gradient(params: Sequence[nn.Parameter], flat: torch.Tensor, reached: Sequence[bool]) -> None:
    """Add the flat gradient ``flat`` to ``.grad`` of ``params`` (as ``backward`` would); a
    parameter no loss reached keeps its ``.grad`` unchanged (None after ``zero_grad``)."""
    offset = 0
    for p, r in zip(params, reached):
        g = flat[offset:offset + p.numel()].view_as(p)
        offset += p.numel()
        if r:
            p.grad = g.detach().clone() if p.grad is None else p.grad + g.detach()


def backward_task_specific(total: torch.Tensor, params: Sequence[nn.Parameter]) -> None:
    """Add the gradient of ``total`` w.r.t. the task-specific ``params`` to their ``.grad``,
    averaged across processes. Only the heads' part of the graph is traversed."""
    if not params or not total.requires_grad:
        return
    grads, reached = task_gradients([total], params)
    accumulate_gradient(params, grads[0], reached)


def cosine_matrix(grads: torch.Tensor) -> torch.Tensor:
    """Pairwise cosine similarities of the rows of ``grads`` (a zero row has cosine 0)."""
    norms = grads.norm(dim=1)
    return (grads @ grads.T) / (norms[:, None] * norms[None, :]).clamp_min(torch.finfo(grads.dtype).tiny)


def pair_values(matrix: torch.Tensor) -> torch.Tensor:
    """The entries (i, j), i < j, of a square matrix: one value per pair of rows."""
    i, j = torch.triu_indices(len(matrix), len(matrix), offset=1, device=matrix.device)
    return matrix[i, j]


def log_scalars(values: Dict[str, float]) -> None:
    """Put ``values`` into the active detectron2 EventStorage, if there is one."""
    try:
        storage = get_event_storage()
    except AssertionError:
        return
    storage.put_scalars(**values)
