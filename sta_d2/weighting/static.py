import torch

from ..specs import FLOAT32_MAX, Key, STAConfigError, list_of, number
from .base import WEIGHTING_REGISTRY, LossWeighting


@WEIGHTING_REGISTRY.register()
class EqualWeighting(LossWeighting):
    """Every task weighs 1: the loss is the plain sum of the task losses (detectron2's default)."""

    def weights(self, task_losses, step):
        return {t: torch.ones(()) for t in self.tasks}


@WEIGHTING_REGISTRY.register()
class StaticWeighting(LossWeighting):
    """Constant per-task weights, ``cfg.STA.WEIGHTING.STATIC.WEIGHTS`` in the model's task order."""

    CONFIG_NAME = "STATIC"
    CONFIG = {"WEIGHTS": Key([], list_of(number(0, FLOAT32_MAX)))}

    def __init__(self, tasks, weights):
        super().__init__(tasks)
        if len(weights) != len(tasks):
            raise STAConfigError(
                f"cfg.STA.WEIGHTING.STATIC.WEIGHTS = {list(weights)}: give one weight per task of the "
                f"model, in its order {self.tasks}"
            )
        self.register_buffer("task_weights", torch.tensor([float(w) for w in weights]))

    def weights(self, task_losses, step):
        return dict(zip(self.tasks, self.task_weights))
