from typing import List

import torch

from ..specs import SEED, Key
from .base import WEIGHTING_REGISTRY, TaskWeighting
from .gradients import (
    accumulate_gradient,
    backward_task_specific,
    cosine_matrix,
    log_scalars,
    pair_values,
    split_parameters,
    task_gradients,
)


def project_conflicting(grads: torch.Tensor, orders: List[List[int]]) -> torch.Tensor:
    """PCGrad's projection (Yu et al., Algorithm 1): for each task i, visiting the other tasks j in
    ``orders[i]``, if g_i . g_j < 0 then g_i <- g_i - (g_i . g_j / |g_j|^2) g_j, where g_i is the
    projected-so-far gradient and g_j the ORIGINAL gradient of task j. Returns the projected rows."""
    projected = grads.clone()
    for i, order in enumerate(orders):
        g = grads[i]
        for j in order:
            dot = g @ grads[j]
            if dot < 0:
                g = g - dot / (grads[j] @ grads[j]) * grads[j]
        projected[i] = g
    return projected


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
    uses the same seed, so all take the same step. Cost: one backward pass per active task.

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
        grads, reached = task_gradients([task_losses[t] for t in active], shared)
        if len(active) > 1:
            log_scalars({"pcgrad/conflict_fraction": float(pair_values(grads @ grads.T < 0).float().mean()),
                         "grad/mean_cosine": float(pair_values(cosine_matrix(grads)).mean())})
        accumulate_gradient(shared, project_conflicting(grads, self.random_orders(len(active))).sum(0), reached)
        backward_task_specific(sum(task_losses[t] for t in self.tasks), specific)
        return {t: 1.0 for t in self.tasks}
