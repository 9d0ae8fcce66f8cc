import torch
from torch import nn

from ..specs import LOG_VARIANCE, Key, STAConfigError, text
from .base import WEIGHTING_REGISTRY, TaskWeighting
from .gradients import (
    accumulate_gradient,
    accumulate_gradients,
    backward_task_specific,
    combine,
    split_parameters,
    task_gradients_with_parameters,
)


@WEIGHTING_REGISTRY.register()
class ImpartialAuxiliaryLearning(TaskWeighting):
    """Uncertainty-based impartial auxiliary learning (Li, Feng, Wang, Yang, Zuo, arXiv 2412.19547).

    One task, ``PRIMARY`` (default: the model's first task), is the one to improve; the others are
    auxiliary. The paper trains in two stages: the task heads ("decoders") impartially, with
    uncertainty weights on every task, primary included, so that no auxiliary task is under-trained;
    the shared encoder with the primary task's gradient plus auxiliary gradients normalised and
    scaled by a function of their uncertainty, so that the primary task keeps dominating. This
    class implements:

    - heads and uncertainties: the gradient of sum_t exp(-s_t) L_t + s_t over the active tasks
      (s_t = log sigma_t^2 learnable, from ``INIT_LOG_VAR``; the form of
      :class:`UncertaintyWeighting`, the 1/2 factors of Kendall et al. dropped);
    - shared parameters: g = g_p + sum_a c_a (||g_p|| / ||g_a||) g_a over the active auxiliary
      tasks a, with g_t = d L_t / d shared parameters (unweighted) and
      c_a = min(1, exp(s_p - s_a)) (s detached): each auxiliary gradient is rescaled to the primary
      gradient's norm and shrunk by its precision relative to the primary's, so none outweighs the
      primary task and noisier auxiliary tasks count less.

    The paper's exact uncertainty function of the encoder stage was not available to us: c_a is
    our choice with the described properties (bounded by the primary's share, decreasing in the
    auxiliary task's uncertainty). With task allocation, when the primary task is not active this
    step, the reference norm is ||g_p|| of the last step it was active with a finite ||g_p||
    (``primary_grad_norm``); before any such step the auxiliary gradients on the shared parameters
    are weighted by exp(-s_a) as on the heads. Under DDP the task gradients (shared and heads) are
    averaged across processes before they are combined, so every process takes the same step.
    """

    CONFIG_NAME = "IAL"
    # PRIMARY: a task of the model ("": its first task)
    CONFIG = {"PRIMARY": Key("", text()), "INIT_LOG_VAR": Key(0.0, LOG_VARIANCE)}

    def __init__(self, tasks, primary="", init_log_var=0.0):
        super().__init__(tasks)
        primary = primary or self.tasks[0]
        if primary not in self.tasks:
            raise STAConfigError(f"cfg.STA.WEIGHTING.IAL.PRIMARY = {primary!r}: not a task of the model "
                                 f"{self.tasks}")
        self.primary = primary
        self.log_vars = nn.Parameter(torch.full((len(self.tasks),), float(init_log_var)))
        self.register_buffer("primary_grad_norm", torch.zeros((), dtype=torch.float64))

    def backward(self, task_losses, step):
        shared, heads = split_parameters(step.model)
        active = [self.tasks.index(t) for t in self.active_tasks(step)]
        rows, reached, head_grads = task_gradients_with_parameters(
            [task_losses[self.tasks[i]] for i in active], shared, heads)
        grads = dict(zip(active, rows))

        k = self.tasks.index(self.primary)
        s = self.log_vars.detach()
        if k in active:  # not from a step whose gradients a GradScaler will skip (inf/NaN)
            norm = grads[k].norm().to(self.primary_grad_norm)
            self.primary_grad_norm.copy_(torch.where(norm.isfinite(), norm, self.primary_grad_norm))
        reference = self.primary_grad_norm
        combined = grads[k] if k in active else torch.zeros_like(torch.cat([q.detach().reshape(-1) for q in shared]))
        for a in active:
            if a == k:
                continue
            norm = grads[a].norm().double()
            share = torch.exp(s[k] - s[a]).double().clamp(max=1.0) * reference / norm
            scale = torch.where(reference > 0, torch.where(norm > 0, share, 0.0), torch.exp(-s[a]).double())
            combined = combined + scale * grads[a]

        precisions = torch.exp(-self.log_vars)
        accumulate_gradients(heads, combine(head_grads, [precisions.detach()[i] for i in active]))
        own = sum(precisions[i] * task_losses[self.tasks[i]].detach() + self.log_vars[i] for i in active)
        backward_task_specific(own, [self.log_vars])
        accumulate_gradient(shared, combined, reached)
        return {t: w for t, w in zip(self.tasks, torch.exp(-s))}
