from typing import List

import torch

from ..specs import SEED, Key
from .base import WEIGHTING_REGISTRY, TaskWeighting
from .gradients import (
    accumulate_gradient,
    accumulate_gradients,
    backward_task_specific,
    combine,
    gram_cosines,
    log_scalars,
    pair_values,
    split_parameters,
    task_gradients_with_parameters,
)


def projection_matrix(gram: torch.Tensor, orders: List[List[int]]) -> torch.Tensor:
    """P such that P @ G are the rows :func:`project_conflicting` returns for the gradients G,
    computed from their Gram matrix ``gram`` = G G^T alone: row i holds the coefficients of the
    original gradients in task i's projected gradient, so (g_i . g_j) of the projected-so-far g_i
    is P[i] @ gram[j]. Each test g_i . g_j < 0 is a ``torch.where`` on the Gram matrix's device,
    not a host synchronisation (a zero g_j, dot 0, is never projected on)."""
    eye = torch.eye(len(gram), dtype=gram.dtype, device=gram.device)
    rows = []
    for i, order in enumerate(orders):
        p = eye[i]
        for j in order:
            dot = p @ gram[j]
            p = p - torch.where(dot < 0, dot / gram[j, j], 0.0) * eye[j]
        rows.append(p)
    return torch.stack(rows)


def project_conflicting(grads: torch.Tensor, orders: List[List[int]]) -> torch.Tensor:
    """PCGrad's projection (Yu et al., Algorithm 1): for each task i, visiting the other tasks j in
    ``orders[i]``, if g_i . g_j < 0 then g_i <- g_i - (g_i . g_j / |g_j|^2) g_j, where g_i is the
    projected-so-far gradient and g_j the ORIGINAL gradient of task j. Returns the projected rows
    (:func:`projection_matrix` of the rows' Gram matrix, in float64, times the rows)."""
    return projection_matrix((grads @ grads.T).double(), orders).to(grads.dtype) @ grads


@WEIGHTING_REGISTRY.register()
class PCGrad(TaskWeighting):
    """Projecting Conflicting Gradients (Yu et al., "Gradient Surgery for Multi-Task Learning",
    NeurIPS 2020), for any number of tasks.

    Shared parameters: the per-task gradients g_t of the ACTIVE tasks (absent tasks have a zero
    gradient and are left out) are projected by :func:`project_conflicting`, each task visiting
    the others in its own random order, and SUMMED, as in the paper (the update of the plain sum of
    losses when nothing conflicts). Task-specific parameters: the gradient of the plain sum of the
    task losses. The orders come from a torch.Generator seeded with ``SEED`` whose state is the
    module's extra state, so a resumed run draws the same orders. Under DDP the per-task
    gradients (and the heads' gradients) are averaged across processes first, and every process
    uses the same seed, so all take the same step.

    Cost: one backward pass per active task, which gives both its shared gradient and its heads'
    gradients (plus a pass through the heads of absent tasks, for their zero gradient). The
    projection works on the T x T Gram matrix (:func:`projection_matrix`): the sum of the projected
    gradients is w @ G for T coefficients w, one matrix-vector product, and no value leaves the
    device.

    Logged when an EventStorage is active: ``pcgrad/conflict_fraction`` (share of active task
    pairs with g_i . g_j < 0) and ``grad/mean_cosine`` (mean pairwise cosine, before projection).
    Every task weight is reported as 1.
    """

    combines_loss_weights = True
    CONFIG_NAME = "PCGRAD"
    CONFIG = {"SEED": Key(0, SEED)}

    def __init__(self, tasks, seed=0):
        super().__init__(tasks)
        self.generator = torch.Generator().manual_seed(seed)

    def get_extra_state(self):
        return self.generator.get_state()

    def set_extra_state(self, state):
        self.generator.set_state(state.cpu())

    def random_orders(self, n: int) -> List[List[int]]:
        """For each of n tasks, the other tasks in a random order."""
        orders = []
        for i in range(n):
            others = [j for j in range(n) if j != i]
            orders.append([others[k] for k in torch.randperm(n - 1, generator=self.generator).tolist()])
        return orders

    def backward(self, task_losses, step):
        shared, specific = split_parameters(step.model)
        active = self.active_tasks(step)
        absent = [task_losses[t] for t in self.tasks if t not in active]
        if absent:
            backward_task_specific(sum(absent), specific)
        grads, reached, heads = task_gradients_with_parameters([task_losses[t] for t in active], shared, specific)
        orders = self.random_orders(len(active))
        if active:
            gram = (grads @ grads.T).double()
            if len(active) > 1:
                log_scalars({"pcgrad/conflict_fraction": pair_values(gram < 0).double().mean(),
                             "grad/mean_cosine": pair_values(gram_cosines(gram)).mean()})
            coefficients = projection_matrix(gram, orders).sum(0).to(grads.dtype)
            accumulate_gradient(shared, coefficients @ grads, reached)
            accumulate_gradients(specific, combine(heads))
        return {t: 1.0 for t in self.tasks}
