"""A loss weighting composed with a gradient method (e.g. PCGrad + uncertainty weights)."""
import torch

from .base import LossWeighting, TaskWeighting
from .gradients import scaled


class WeightedGradientMethod(TaskWeighting):
    """The gradient method ``gradient_method`` applied to the task losses weighted by
    ``loss_weighting``: it combines the per-task gradients of w_t L_t (PCGrad projects them,
    MGDA-UB finds their min-norm point, ...), while the loss weighting's own parameters get the
    gradient of its usual objective sum_t w_t L_t + regulariser (uncertainty weights: exp(-s_t)
    L_t + s_t), which the gradient method does not change. Selected by ``STA.WEIGHTING.NAME`` (the
    gradient method) and ``STA.WEIGHTING.LOSS_WEIGHTING``. The logged weight of a task is w_t
    times the gradient method's own weight (PCGrad: 1, MGDA-UB: alpha_t).
    """

    def __init__(self, loss_weighting: LossWeighting, gradient_method: TaskWeighting):
        super().__init__(gradient_method.tasks)
        self.loss_weighting = loss_weighting
        self.gradient_method = gradient_method

    def backward(self, task_losses, step):
        weights = self.loss_weighting.weights(task_losses, step)
        own = [p for p in self.loss_weighting.parameters() if p.requires_grad]
        if own:
            objective = sum(weights[t] * task_losses[t].detach() for t in self.tasks)
            objective = objective + self.loss_weighting.regulariser(step)
            for param, grad in zip(own, torch.autograd.grad(scaled(objective), own, allow_unused=True)):
                if grad is not None:
                    param.grad = grad if param.grad is None else param.grad + grad
        weighted = {t: weights[t].detach().to(task_losses[t]) * task_losses[t] for t in self.tasks}
        combined = self.gradient_method.backward(weighted, step)
        self.loss_weighting.observe(task_losses)
        return {t: weights[t].detach() * combined[t] for t in self.tasks}
