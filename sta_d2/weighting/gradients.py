"""Per-task gradients for the gradient-based methods (PCGrad, MGDA-UB, GradNorm, CosReg, IAL).

Only the tasks of ``step.active`` are differentiated: an absent task's loss is an exact zero, its
gradient a zero vector that would distort any combination. Under DDP every process holds the
gradients of its own sub-batch; :func:`sta_d2.comm.all_average` averages a per-task quantity across processes
(the stacked per-task gradient matrix, or a Gram matrix) before it is combined, so that every
process combines the same gradients and takes the same step. At world size 1 it is a no-op.

Nothing here brings a value to the host: scalars to log stay tensors until the trainer moves
all of a step's values in one transfer (:func:`deferred_scalars`).

Mixed precision: inside :func:`loss_scaling` (the trainer's, with a float16 GradScaler) every
backward pass differentiates the losses times the scale S (:func:`scaled`), so that small float16
gradients do not underflow, and each per-task gradient is divided by S as soon as it is computed
(:func:`unscaled`, also casting low-precision gradients to float32): the methods combine true
gradients in float32. What goes into ``.grad`` is multiplied by S again (exact: S is a power of
two), as a plain backward of a scaled loss leaves it, for the scaler to unscale and check.
"""
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from detectron2.utils import comm
from detectron2.utils.events import get_event_storage
from torch import nn

from ..comm import all_average


def split_parameters(model) -> Tuple[List[nn.Parameter], List[nn.Parameter]]:
    """(shared, task-specific) trainable parameters of a multi-task model; task-specific is every
    trainable parameter that ``model.shared_parameters()`` does not list."""
    shared = list(model.shared_parameters())
    ids = {id(p) for p in shared}
    return shared, [p for p in model.parameters() if p.requires_grad and id(p) not in ids]


_LOSS_SCALE: ContextVar[Optional[torch.Tensor]] = ContextVar("sta_d2_loss_scale", default=None)


@contextmanager
def loss_scaling(scale: Optional[torch.Tensor]):
    """Inside, backward passes differentiate the losses times ``scale`` (a 0-dim tensor, a
    GradScaler's current scale; None: no scaling)."""
    token = _LOSS_SCALE.set(scale)
    try:
        yield
    finally:
        _LOSS_SCALE.reset(token)


def scaled(loss: torch.Tensor) -> torch.Tensor:
    """``loss`` times the active loss scale: what a method differentiates, or the gradient it
    puts into ``.grad``."""
    scale = _LOSS_SCALE.get()
    return loss if scale is None else loss * scale


def unscaled(grad: torch.Tensor) -> torch.Tensor:
    """A gradient of :func:`scaled` losses as the gradient of the losses: divided by the active
    loss scale, in float32 if it was float16 or bfloat16 (a gradient w.r.t. autocast
    activations)."""
    if grad.dtype in (torch.float16, torch.bfloat16):
        grad = grad.float()
    scale = _LOSS_SCALE.get()
    return grad if scale is None else grad / scale


def add_to_grad(param: torch.Tensor, grad: torch.Tensor) -> None:
    """``param.grad`` += ``grad`` (a gradient of the losses) times the active loss scale, as a
    backward pass of the scaled losses would add it."""
    grad = scaled(grad.detach())
    param.grad = grad.clone() if param.grad is None else param.grad + grad


def task_gradients(losses: Sequence[torch.Tensor], inputs: Sequence[torch.Tensor], create_graph: bool = False,
                   average: bool = True) -> Tuple[torch.Tensor, List[bool]]:
    """Per-loss gradients w.r.t. ``inputs``, flattened and stacked: (len(losses), total numel),
    averaged across processes unless ``average`` is False (gradients w.r.t. activations, which
    differ per process). Inputs a loss does not reach get zeros; the second value tells, per
    input, whether any loss reached it. The graph is kept for later backward passes."""
    rows, reached, _ = task_gradients_with_parameters(losses, inputs, [], create_graph, average)
    return rows, reached


def task_gradients_with_parameters(losses: Sequence[torch.Tensor], inputs: Sequence[torch.Tensor],
                                   params: Sequence[torch.Tensor], create_graph: bool = False, average: bool = True
                                   ) -> Tuple[torch.Tensor, List[bool], List[List[Optional[torch.Tensor]]]]:
    """:func:`task_gradients` w.r.t. ``inputs`` and, from the same backward pass of each loss, its
    gradients w.r.t. ``params`` (the task heads), one list per loss, None where the loss does not
    reach a parameter; these are not averaged: combine them, then :func:`accumulate_gradients`.
    One pass per loss yields both, where a separate pass for ``params`` would run the heads' backward
    again."""
    rows, reached, heads = [], [False] * len(inputs), []
    everything = list(inputs) + list(params)
    for loss in losses:
        grads = [None] * len(everything)
        if loss.requires_grad:
            grads = torch.autograd.grad(scaled(loss), everything, retain_graph=True, create_graph=create_graph,
                                        allow_unused=True)
            grads = [None if g is None else unscaled(g) for g in grads]
        reached = [r or g is not None for r, g in zip(reached, grads)]
        rows.append(torch.cat([(torch.zeros_like(x) if g is None else g).reshape(-1) for g, x in zip(grads, inputs)]))
        heads.append(list(grads[len(inputs):]))
    if not rows:
        return torch.zeros(0, sum(x.numel() for x in inputs), device=inputs[0].device), reached, heads
    rows = torch.stack(rows)
    return (all_average(rows, differentiable=create_graph) if average else rows), reached, heads


def shared_gradients(representation: Sequence[torch.Tensor], flat: torch.Tensor, params: Sequence[torch.Tensor],
                     retain_graph: bool = False) -> Tuple[Optional[torch.Tensor], ...]:
    """The gradients w.r.t. ``params`` (None where unreached) given the gradient ``flat`` at the
    shared representation (flattened and concatenated, as a row of :func:`task_gradients` w.r.t.
    ``representation``): one backward pass through the shared network, not averaged."""
    upstream = [g.view_as(z) for g, z in zip(scaled(flat).split([z.numel() for z in representation]), representation)]
    grads = torch.autograd.grad(representation, params, upstream, retain_graph=retain_graph, allow_unused=True)
    return tuple(None if g is None else unscaled(g) for g in grads)


def combine(per_loss: Sequence[Sequence[Optional[torch.Tensor]]], weights: Optional[Sequence] = None
            ) -> List[Optional[torch.Tensor]]:
    """Per parameter, sum_k weights[k] * per_loss[k][parameter] (weights 1 if None) over the losses
    that reach it; None where none does."""
    combined = []
    for grads in zip(*per_loss):
        terms = [g if weights is None else weights[k] * g for k, g in enumerate(grads) if g is not None]
        combined.append(sum(terms[1:], terms[0]) if terms else None)
    return combined


def accumulate_gradient(params: Sequence[nn.Parameter], flat: torch.Tensor, reached: Sequence[bool]) -> None:
    """Add the flat gradient ``flat`` to ``.grad`` of ``params`` (as ``backward`` would); a
    parameter no loss reached keeps its ``.grad`` unchanged (None after ``zero_grad``)."""
    offset = 0
    for p, r in zip(params, reached):
        g = flat[offset:offset + p.numel()].view_as(p)
        offset += p.numel()
        if r:
            add_to_grad(p, g)


def accumulate_gradients(params: Sequence[nn.Parameter], grads: Sequence[Optional[torch.Tensor]]) -> None:
    """Add per-parameter gradients (None: unreached, ``.grad`` unchanged) to ``.grad``, averaged
    across processes in one all-reduce."""
    reached = [g is not None for g in grads]
    if comm.get_world_size() > 1:
        flat = torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1) for p, g in zip(params, grads)])
        accumulate_gradient(params, all_average(flat), reached)
        return
    for p, g in zip(params, grads):
        if g is not None:
            add_to_grad(p, g)


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


def gram_cosines(gram: torch.Tensor) -> torch.Tensor:
    """:func:`cosine_matrix` of rows given by their Gram matrix."""
    norms = gram.diagonal().clamp_min(0).sqrt()
    return gram / (norms[:, None] * norms[None, :]).clamp_min(torch.finfo(gram.dtype).tiny)


def pair_values(matrix: torch.Tensor) -> torch.Tensor:
    """The entries (i, j), i < j, of a square matrix: one value per pair of rows."""
    i, j = torch.triu_indices(len(matrix), len(matrix), offset=1, device=matrix.device)
    return matrix[i, j]


_DEFERRED: ContextVar[Optional[Dict[str, object]]] = ContextVar("sta_d2_deferred_scalars", default=None)


@contextmanager
def deferred_scalars():
    """Inside, :func:`log_scalars` collects its values (tensors stay where they are) into the
    yielded dict instead of writing them, for the caller to write once they are on the host."""
    collected: Dict[str, object] = {}
    token = _DEFERRED.set(collected)
    try:
        yield collected
    finally:
        _DEFERRED.reset(token)


def log_scalars(values: Dict[str, object]) -> None:
    """Put ``values`` (floats or 0-dim tensors) into the active detectron2 EventStorage, if there
    is one; inside :func:`deferred_scalars`, hand them to its caller instead."""
    deferred = _DEFERRED.get()
    if deferred is not None:
        deferred.update(values)
        return
    try:
        storage = get_event_storage()
    except AssertionError:
        return
    storage.put_scalars(**{k: float(v) for k, v in values.items()})
