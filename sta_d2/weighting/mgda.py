from typing import List

import torch

from ..comm import all_average
from ..specs import Key, integer, one_of
from .base import WEIGHTING_REGISTRY, TaskWeighting
from .gradients import (
    accumulate_gradients,
    backward_task_specific,
    combine,
    shared_gradients,
    split_parameters,
    task_gradients_with_parameters,
)

NORMALIZATIONS = ("none", "l2", "loss", "loss+")
# Frank-Wolfe stops once its duality gap is below TOLERANCE times the objective (see frank_wolfe)
TOLERANCE = 1e-6


def frank_wolfe(gram: List[List[float]], iterations: int, tolerance: float = TOLERANCE) -> List[float]:
    """The alpha of the simplex minimising alpha^T M alpha = |sum_t alpha_t g_t|^2 (M = G G^T, the
    Gram matrix of the gradients, as nested lists), by Frank-Wolfe (Sener and Koltun, Algorithm 2):
    start from the uniform alpha; at each iteration take the vertex t with the smallest
    (M alpha)_t and do the exact line search between the current point u = G^T alpha and g_t
    (their Algorithm 1): gamma = min(u.(u - g_t) / |u - g_t|^2, 1).

    Stops after ``iterations``, or as soon as u.(u - g_t) = alpha^T M alpha - (M alpha)_t <=
    ``tolerance`` * alpha^T M alpha (0 in the paper: the step is zero, u is optimal). Twice that
    gap is Frank-Wolfe's duality gap, a bound on the distance to the minimum, so the result's
    |u|^2 is within a factor 1 + 2 ``tolerance`` of the minimum; exact after one iteration for two
    tasks. Plain Python floats (float64): T x T numbers, cheaper on the host than any device."""
    n = len(gram)
    alpha = [1.0 / n] * n
    for _ in range(iterations):
        m_alpha = [sum(m * a for m, a in zip(row, alpha)) for row in gram]
        t = min(range(n), key=m_alpha.__getitem__)
        uu, uv, vv = sum(a * m for a, m in zip(alpha, m_alpha)), m_alpha[t], gram[t][t]
        if uu - uv <= tolerance * uu:
            break
        gamma = min(1.0, (uu - uv) / (uu - 2 * uv + vv))
        alpha = [(1 - gamma) * a for a in alpha]
        alpha[t] += gamma
    return alpha


def min_norm_weights(gram: torch.Tensor, iterations: int, tolerance: float = TOLERANCE) -> torch.Tensor:
    """:func:`frank_wolfe` for a Gram matrix tensor (one transfer to the host); float64 on the CPU."""
    return torch.tensor(frank_wolfe(gram.double().tolist(), iterations, tolerance), dtype=torch.float64)


@WEIGHTING_REGISTRY.register()
class MGDAUB(TaskWeighting):
    """MGDA-UB (Sener and Koltun, "Multi-Task Learning as Multi-Objective Optimization", NeurIPS 2018).

    The ACTIVE tasks' losses are differentiated w.r.t. the shared representation Z
    (``model.shared_representation()``: the backbone's outputs, flattened and concatenated); the
    min-norm point of the convex hull of these gradients gives alpha (:func:`frank_wolfe`, at most
    ``ITERATIONS`` Frank-Wolfe steps, stopped at a relative duality gap of ``TOLERANCE``); then
    the gradient of sum_t alpha_t L_t goes into the shared and task-specific parameters alike, as
    the authors' released code does (the paper's Algorithm 2 steps the task-specific parameters
    with the unweighted task gradients instead). Absent tasks are left out (their zero gradient
    would be the min-norm point) and weigh 0.

    ``NORMALIZATION`` scales each gradient before the min-norm problem (the options of the
    authors' code): "none" (the paper's formulas), "l2" (g_t / |g_t|), "loss" (g_t / L_t),
    "loss+" (g_t / (L_t |g_t|)). alpha is then applied to the raw losses, as in that code; only
    with "none" is sum_t alpha_t g_t guaranteed to be the min-norm (common descent) direction.

    Cost: one backward pass through the heads per active task, which also gives the heads'
    gradients, then one through the shared network from Z with sum_t alpha_t dL_t/dZ: about the
    cost of one plain backward pass. The T x T Gram matrix is the only value brought to the host
    (one transfer per step with two or more active tasks; a single task weighs 1), where
    Frank-Wolfe runs. Under DDP the Gram matrix is averaged across processes (the Gram matrix of
    the concatenation of all processes' Z is the sum of the local ones; the scale does not change
    alpha), and so are the losses used by "loss"/"loss+" and the gradients of the parameters.
    """

    combines_loss_weights = True
    CONFIG_NAME = "MGDA"
    CONFIG = {"NORMALIZATION": Key("none", one_of(NORMALIZATIONS)), "ITERATIONS": Key(250, integer(1))}

    def __init__(self, tasks, normalization="none", iterations=250):
        super().__init__(tasks)
        self.normalization, self.iterations = normalization, iterations

    def backward(self, task_losses, step):
        shared, specific = split_parameters(step.model)
        active = self.active_tasks(step)
        absent = [task_losses[t] for t in self.tasks if t not in active]
        weights = {t: 0.0 for t in self.tasks}
        if not active:
            backward_task_specific(sum(absent), shared + specific)
            return weights
        if absent:
            backward_task_specific(sum(absent), specific)
        representation = step.model.shared_representation()
        grads, _, heads = task_gradients_with_parameters([task_losses[t] for t in active], representation,
                                                         specific, average=False)
        gram = all_average(grads.double() @ grads.double().T)
        scale = torch.ones(len(active), dtype=torch.float64, device=gram.device)
        if self.normalization in ("loss", "loss+"):
            scale = all_average(torch.stack([task_losses[t].detach().double() for t in active]))
        if self.normalization in ("l2", "loss+"):
            scale = scale * gram.diagonal().sqrt()
        scale = scale.clamp_min(torch.finfo(torch.float64).tiny)
        alpha = [1.0] if len(active) == 1 else frank_wolfe((gram / (scale[:, None] * scale[None, :])).tolist(),
                                                          self.iterations)
        weights.update(zip(active, alpha))
        alpha = torch.tensor(alpha, dtype=grads.dtype, device=grads.device)
        accumulate_gradients(specific, combine(heads, alpha))
        if shared:
            accumulate_gradients(shared, shared_gradients(representation, alpha @ grads, shared))
        return weights
