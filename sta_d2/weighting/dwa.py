import torch

from ..comm import all_average
from ..specs import Key, integer, number
from .base import WEIGHTING_REGISTRY, LossWeighting


@WEIGHTING_REGISTRY.register()
class DynamicWeightAverage(LossWeighting):
    """Dynamic Weight Average (Liu, Johns and Davison, MTAN, CVPR 2019).

    w_t(k) = T exp(r_t(k-1) / tau) / sum_i exp(r_i(k-1) / tau), r_t(k-1) = Lbar_t(k-1) / Lbar_t(k-2),
    where Lbar_t(k) is task t's mean loss over window k and tau = ``TEMPERATURE``. The paper's
    windows are epochs; here a window is ``WINDOW`` optimizer steps (set it to the steps of one
    epoch to follow the paper). Weights are 1 until every task has two window means.

    With task allocation, Lbar_t is the mean over the steps of the window in which t was active
    (allocated to at least one image): an absent task's loss, an exact zero, is not recorded (nor
    is an active task's loss of exactly zero, e.g. when all its pixels are ignored). A
    window in which t was never active leaves t's two last means as they are, so r_t always
    compares the last two windows in which t was active.
    """

    CONFIG_NAME = "DWA"
    CONFIG = {"WINDOW": Key(100, integer(1)), "TEMPERATURE": Key(2.0, number(positive=True))}

    def __init__(self, tasks, window=100, temperature=2.0):
        super().__init__(tasks)
        self.window, self.temperature = window, float(temperature)
        n = len(self.tasks)
        self.register_buffer("steps_in_window", torch.zeros((), dtype=torch.long))
        self.register_buffer("window_sum", torch.zeros(n, dtype=torch.float64))
        self.register_buffer("window_count", torch.zeros(n, dtype=torch.long))
        # means[0]: the task's last window mean, means[1]: the one before; known: how many are set.
        self.register_buffer("means", torch.zeros(2, n, dtype=torch.float64))
        self.register_buffer("known", torch.zeros(n, dtype=torch.long))

    def weights(self, task_losses, step):
        ratio = self.means[0] / self.means[1]
        w = len(self.tasks) * torch.softmax(ratio / self.temperature, dim=0)
        w = torch.where((self.known < 2).any(), 1.0, w).float()
        return {t: w[i] for i, t in enumerate(self.tasks)}

    @torch.no_grad()
    def observe(self, task_losses):
        """Add this step's non-zero task losses to the window; close it after WINDOW steps.

        Under DDP a task's loss is the mean over the processes where it is non-zero, so that every
        process keeps the same history. Branch-free (masked updates), so no value leaves the device."""
        losses = torch.stack([task_losses[t].detach() for t in self.tasks]).to(self.window_sum)
        present = all_average((losses != 0).double())
        losses = all_average(losses)
        seen = present > 0
        self.window_sum += torch.where(seen, losses / present, 0.0)
        self.window_count += seen.long()
        self.steps_in_window += 1
        closing = self.steps_in_window >= self.window
        seen = closing & (self.window_count > 0)
        self.means[1] = torch.where(seen, self.means[0], self.means[1])
        self.means[0] = torch.where(seen, self.window_sum / self.window_count, self.means[0])
        self.known.copy_(torch.where(seen, (self.known + 1).clamp(max=2), self.known))
        self.window_sum.masked_fill_(closing, 0.0)
        self.window_count.masked_fill_(closing, 0)
        self.steps_in_window.masked_fill_(closing, 0)
