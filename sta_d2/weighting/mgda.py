import torch

from ..comm import all_average
from ..specs import Key, integer, one_of
from .base import WEIGHTING_REGISTRY, TaskWeighting
from .gradients import task_gradients

NORMALIZATIONS = ("none", "l2", "loss", "loss+")


def min_norm_weights(gram: torch.Tensor, iterations: int) -> torch.Tensor:
    """The alpha of the simplex minimising alpha^T M alpha = |sum_t alpha_t g_t|^2 (M = G G^T, the
    Gram matrix of the gradients), by Frank-Wolfe (Sener and Koltun, Algorithm 2): start from the
    uniform alpha; at each iteration take the vertex t with the smallest (M alpha)_t and do the exact
    line search between the current point u = G^T alpha and g_t (their Algorithm 1):
    gamma = clamp(u.(u - g_t) / |u - g_t|^2, 0, 1). Stops when the step is zero (u is optimal) or
    after ``iterations``; exact after one iteration for two tasks. Float64."""
    gram = gram.double()
    alpha = torch.full((len(gram),), 1.0 / len(gram), dtype=torch.float64, device=gram.device)
    for _ in range(iterations):
        m_alpha = gram @ alpha
        t = int(torch.argmin(m_alpha))
        uu, uv, vv = float(alpha @ m_alpha), float(m_alpha[t]), float(gram[t, t])
        if uu - uv <= 0:
            break
        gamma = min(1.0, (uu - uv) / (uu - 2 * uv + vv))
        alpha = (1 - gamma) * alpha
        alpha[t] += gamma
    return alpha


@WEIGHTING_REGISTRY.register()
class MGDAUB(TaskWeighting):
    """MGDA-UB (Sener and Koltun, "Multi-Task Learning as Multi-Objective Optimization", NeurIPS 2018).

    The ACTIVE tasks' losses are differentiated w.r.t. the shared representation Z
    (``model.shared_representation()``: the backbone's outputs, flattened and concatenated); the
    min-norm point of the convex hull of these gradients gives alpha (:func:`min_norm_weights`,
    ``ITERATIONS`` Frank-Wolfe steps); then sum_t alpha_t L_t is back-propagated once, into the
    shared and task-specific parameters alike, as the authors' released code does (the paper's
    Algorithm 2 steps the task-specific parameters with the unweighted task gradients instead).
    Absent tasks are left out (their zero gradient would be the min-norm point) and weigh 0.

    ``NORMALIZATION`` scales each gradient before the min-norm problem (the options of the
    authors' code): "none" (the paper's formulas), "l2" (g_t / |g_t|), "loss" (g_t / L_t),
    "loss+" (g_t / (L_t |g_t|)). alpha is then applied to the raw losses, as in that code; only
    with "none" is sum_t alpha_t g_t guaranteed to be the min-norm (common descent) direction.

    Cost: one backward pass through the heads per active task, plus the full backward pass. Under
    DDP the Gram matrix is averaged across processes (the Gram matrix of the concatenation of all
    processes' Z is the sum of the local ones; the scale does not change alpha), and so are the
    losses used by "loss"/"loss+".
    """

    combines_loss_weights = True
    CONFIG_NAME = "MGDA"
    CONFIG = {"NORMALIZATION": Key("none", one_of(NORMALIZATIONS)), "ITERATIONS": Key(250, integer(1))}

    def __init__(self, tasks, normalization="none", iterations=250):
        super().__init__(tasks)
        self.normalization, self.iterations = normalization, iterations

    def backward(self, task_losses, step):
        active = self.active_tasks(step)
        weights = {t: 0.0 for t in self.tasks}
        if active:
            grads, _ = task_gradients([task_losses[t] for t in active], step.model.shared_representation(),
                                      average=False)
            gram = all_average(grads.double() @ grads.double().T)
            scale = torch.ones(len(active), dtype=torch.float64, device=gram.device)
            if self.normalization in ("loss", "loss+"):
                scale = all_average(torch.stack([task_losses[t].detach().double() for t in active]))
            if self.normalization in ("l2", "loss+"):
                scale = scale * gram.diagonal().sqrt()
            scale = scale.clamp_min(torch.finfo(torch.float64).tiny)
            alpha = min_norm_weights(gram / (scale[:, None] * scale[None, :]), self.iterations)
            weights.update(zip(active, alpha.tolist()))
        sum(weights[t] * task_losses[t] for t in self.tasks).backward()
        return weights
