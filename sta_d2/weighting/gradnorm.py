import torch
from torch import nn

from ..comm import all_average
from ..specs import Key, number
from .base import WEIGHTING_REGISTRY, TaskWeighting
from .gradients import (
    accumulate_gradients,
    combine,
    log_scalars,
    scaled,
    shared_gradients,
    split_parameters,
    task_gradients_with_parameters,
)

MIN_WEIGHT = 1e-6


@WEIGHTING_REGISTRY.register()
class GradNorm(TaskWeighting):
    """GradNorm (Chen, Badrinarayanan, Lee and Rabinovich, ICML 2018).

    Learnable task weights w_t (``task_weights``, starting at 1, trained by the optimizer with
    ``cfg.STA.WEIGHTING.LR``). At each step, over the ACTIVE tasks only (absent tasks enter
    neither G, r nor the loss, and their w_t gets a zero gradient):

    - G_t = |grad_W (w_t L_t)| = w_t |grad_W L_t|, W = ``model.last_shared_layer()``;
    - r_t = Lt_t / mean(Lt), Lt_t = L_t / L_t(0), with L_t(0) the loss of the first step at which
      t was active (``initial_losses``, ``has_initial_loss``; a zero loss is not recorded, Lt_t is
      1 until a positive one is);
    - target G*_t = mean(G) r_t^ALPHA, a constant;
    - w.grad = d/dw sum_t |G_t - G*_t| = sign(G_t - G*_t) |grad_W L_t|. As G_t is linear in w_t
      this needs no double backward.

    The model gets the gradient of sum_t w_t L_t with w detached. The paper renormalises w after
    each update so that sum_t w_t = T (number of tasks); the update is the optimizer's step, which
    follows ``backward``, so ``backward`` first renormalises the weights the last step produced
    (after flooring them at 1e-6: a negative weight would ascend its loss) and then uses them.

    Cost: one backward pass per task through its heads to the shared representation Z
    (``model.shared_representation()``), which also gives the heads' gradients; for each active
    task, one from dL_t/dZ through the layers between W and Z (grad_W L_t); then one through the
    shared network with sum_t w_t dL_t/dZ: about one plain backward pass. Under DDP, grad_W L_t, the losses and the model's gradients are averaged
    across processes, so every process computes the same w.grad and step. Logged: ``gradnorm/loss``.
    """

    CONFIG_NAME = "GRADNORM"
    CONFIG = {"ALPHA": Key(1.5, number(0))}

    def __init__(self, tasks, alpha=1.5):
        super().__init__(tasks)
        self.alpha = float(alpha)
        n = len(self.tasks)
        self.task_weights = nn.Parameter(torch.ones(n))
        self.register_buffer("initial_losses", torch.zeros(n, dtype=torch.float64))
        self.register_buffer("has_initial_loss", torch.zeros(n, dtype=torch.bool))

    @torch.no_grad()
    def renormalise(self):
        """w <- T w / sum(w), after flooring w at MIN_WEIGHT."""
        w = self.task_weights.clamp_(min=MIN_WEIGHT)
        w.mul_(len(self.tasks) / w.sum())

    def backward(self, task_losses, step):
        self.renormalise()
        shared, heads = split_parameters(step.model)
        representation = step.model.shared_representation()
        dz, _, head_grads = task_gradients_with_parameters([task_losses[t] for t in self.tasks], representation,
                                                           heads, average=False)
        weights = self.task_weights.detach().clone()
        index = [self.tasks.index(t) for t in self.active_tasks(step)]
        if index:
            layer = step.model.last_shared_layer()
            grads = [shared_gradients(representation, dz[i], [layer], retain_graph=True)[0] for i in index]
            grads = all_average(torch.stack([torch.zeros_like(layer) if g is None else g for g in grads]).flatten(1))
            norms = grads.norm(dim=1).to(self.task_weights.dtype)
            losses = [task_losses[self.tasks[i]] for i in index]
            values = all_average(torch.stack([loss.detach().double() for loss in losses])).to(self.initial_losses)
            rows = torch.tensor(index).to(self.initial_losses.device, non_blocking=True)
            new = ~self.has_initial_loss[rows] & (values > 0)
            self.initial_losses[rows] = torch.where(new, values, self.initial_losses[rows])
            self.has_initial_loss[rows] = self.has_initial_loss[rows] | new
            ratios = torch.where(self.has_initial_loss[rows], values / self.initial_losses[rows], 1.0)
            relative = ((ratios / ratios.mean()) ** self.alpha).to(norms)
            grad_norms = self.task_weights[rows] * norms
            gradnorm_loss = (grad_norms - grad_norms.mean().detach() * relative).abs().sum()
            scaled(gradnorm_loss).backward()
            log_scalars({"gradnorm/loss": gradnorm_loss.detach()})
        accumulate_gradients(heads, combine(head_grads, weights))
        if shared:
            accumulate_gradients(shared, shared_gradients(representation, weights.to(dz) @ dz, shared))
        return {t: weights[i] for i, t in enumerate(self.tasks)}
