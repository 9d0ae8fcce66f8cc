import torch
from torch import nn

from ..comm import all_average
from ..specs import Key, number
from .base import WEIGHTING_REGISTRY, TaskWeighting
from .gradients import log_scalars, task_gradients

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
      this needs no double backward: one backward pass per active task, through W only.

    The model gets the gradient of sum_t w_t L_t with w detached (one backward pass). The paper
    renormalises w after each update so that sum_t w_t = T (number of tasks); the update is the
    optimizer's step, which follows ``backward``, so ``backward`` first renormalises the weights
    the last step produced (after flooring them at 1e-6: a negative weight would ascend its loss)
    and then uses them. Under DDP, grad_W L_t and the losses are averaged across processes, so
    every process computes the same w.grad. Logged: ``gradnorm/loss``.
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
        index = [self.tasks.index(t) for t in self.active_tasks(step)]
        if index:
            losses = [task_losses[self.tasks[i]] for i in index]
            grads, _ = task_gradients(losses, [step.model.last_shared_layer()])
            norms = grads.norm(dim=1).to(self.task_weights.dtype)
            values = all_average(torch.stack([loss.detach().double() for loss in losses])).to(self.initial_losses)
            rows = torch.tensor(index).to(self.initial_losses.device, non_blocking=True)
            new = ~self.has_initial_loss[rows] & (values > 0)
            self.initial_losses[rows] = torch.where(new, values, self.initial_losses[rows])
            self.has_initial_loss[rows] = self.has_initial_loss[rows] | new
            ratios = torch.where(self.has_initial_loss[rows], values / self.initial_losses[rows], 1.0)
            relative = ((ratios / ratios.mean()) ** self.alpha).to(norms)
            grad_norms = self.task_weights[rows] * norms
            gradnorm_loss = (grad_norms - grad_norms.mean().detach() * relative).abs().sum()
            gradnorm_loss.backward()
            log_scalars({"gradnorm/loss": gradnorm_loss.detach()})
        weights = self.task_weights.detach().clone()
        sum(weights[i] * task_losses[t] for i, t in enumerate(self.tasks)).backward()
        return {t: weights[i] for i, t in enumerate(self.tasks)}
