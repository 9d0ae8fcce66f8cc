import torch

from ..specs import Key, number
from .base import WEIGHTING_REGISTRY, TaskWeighting
from .gradients import log_scalars, pair_values, scaled, split_parameters, task_gradients


@WEIGHTING_REGISTRY.register()
class CosReg(TaskWeighting):
    """Orthogonal-gradient regularisation (Suteu and Guo, "Regularizing Deep Multi-Task Networks
    using Orthogonal Gradients", 2019).

    Loss: sum_t L_t + WEIGHT * sum_{i<j} cos(g_i, g_j)^2, with g_t the gradient of L_t w.r.t. the
    shared parameters (flattened), the squared cosine summed over the pairs of ACTIVE tasks (an
    absent task's gradient is zero and its cosine undefined; so is a zero gradient of an active
    task, which is left out too). The g_t are computed with ``create_graph=True`` and the loss is
    back-propagated once into every parameter, so the cost is one backward pass per active task
    (none with fewer than two) plus a double backward (Hessian-vector products) through the shared network, with its memory;
    every op between the shared parameters and the losses needs a double backward, so it does not
    apply to the R-CNN models (torchvision's roi_align has none; rejected when the trainer is
    built).
    Under DDP the g_t are averaged across processes with a differentiable all-reduce before the
    cosines. Zero gradients are left out with masks, not by indexing, so no value leaves the
    device. Logged with two or more active tasks: ``cosreg/regulariser`` (the sum of squared
    cosines, before WEIGHT) and ``grad/mean_cosine`` (over the pairs of non-zero gradients, 0 if
    there is none). Every task weight is reported as 1.
    """

    combines_loss_weights = True
    CONFIG_NAME = "COSREG"
    # the paper's lambda; 0.1 is our default (the paper's value was not available to us)
    CONFIG = {"WEIGHT": Key(0.1, number(0))}
    double_backward = True

    def __init__(self, tasks, weight=0.1):
        super().__init__(tasks)
        self.weight = float(weight)

    def backward(self, task_losses, step):
        shared, _ = split_parameters(step.model)
        active = self.active_tasks(step)
        total = sum(task_losses[t] for t in self.tasks)
        if len(active) > 1:
            grads, _ = task_gradients([task_losses[t] for t in active], shared, create_graph=True)
            norms = grads.norm(dim=1)
            nonzero = norms.detach() > 0
            counted = pair_values(nonzero[:, None] & nonzero[None, :])
            products = pair_values(norms[:, None] * norms[None, :]).clamp_min(torch.finfo(grads.dtype).tiny)
            # a pair with a zero gradient has cosine 0 (its dot product is 0) and no gradient
            pairs = pair_values(grads @ grads.T) / torch.where(counted, products, 1.0)
            regulariser = (pairs ** 2).sum()
            total = total + self.weight * regulariser
            log_scalars({"cosreg/regulariser": regulariser.detach(),
                         "grad/mean_cosine": pairs.detach().sum() / counted.sum().clamp_min(1)})
        scaled(total).backward()
        return {t: 1.0 for t in self.tasks}
