import torch
from torch import nn

from ..specs import LOG_VARIANCE, Key
from .base import WEIGHTING_REGISTRY, LossWeighting


@WEIGHTING_REGISTRY.register()
class UncertaintyWeighting(LossWeighting):
    """Homoscedastic uncertainty weighting (Kendall, Gal and Cipolla, CVPR 2018).

    One learnable s_t = log(sigma_t^2) per task; the loss is sum_t exp(-s_t) L_t + s_t, the
    form used for every task type (the 1/2 factors of the paper's regression case are dropped,
    as most multi-task codebases do). s_t starts at ``INIT_LOG_VAR`` (0: weight 1). A task with
    no allocated image this step contributes neither term, so its s_t is not pushed down.
    """

    CONFIG_NAME = "UW"
    CONFIG = {"INIT_LOG_VAR": Key(0.0, LOG_VARIANCE)}

    def __init__(self, tasks, init_log_var=0.0):
        super().__init__(tasks)
        self.log_vars = nn.Parameter(torch.full((len(tasks),), float(init_log_var)))

    def weights(self, task_losses, step):
        return {t: torch.exp(-self.log_vars[i]) for i, t in enumerate(self.tasks)}

    def regulariser(self, step):
        return sum(self.log_vars[self.tasks.index(t)] for t in self.active_tasks(step))
