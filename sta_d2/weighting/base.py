"""The one interface that turns per-task losses into the gradients of an optimizer step.

A method is a :class:`TaskWeighting` subclass in its own module, registered in
``WEIGHTING_REGISTRY`` and selected by ``cfg.STA.WEIGHTING.NAME``. Its hyper-parameters are the
class attribute ``CONFIG`` (a dict), which ``add_sta_config`` installs as
``cfg.STA.WEIGHTING.<CONFIG_NAME>``; ``CONFIG_SPECS`` says what each value must be (a
:class:`sta_d2.config.Spec`), for validate_sta_config and the method's constructor alike.
Learnable quantities (e.g. uncertainty weights) are its ``nn.Parameter``s: the trainer adds them
to the optimizer as extra parameter groups (:meth:`TaskWeighting.param_groups`) and averages their
gradients over processes. Everything it keeps is in its ``state_dict`` (parameters, buffers and
``get_extra_state``), which the trainer checkpoints and restores on resume. A method that needs
more of the training forward than the task losses (per-image losses, predictions) names it in
``RECORDS``; models that can record it list it in their ``RECORDABLE``.
"""
from dataclasses import dataclass, field
from typing import Dict, List, Tuple

import torch
from detectron2.modeling.poolers import ROIPooler
from detectron2.utils.registry import Registry
from torch import nn

from ..config import STAConfigError, Spec
from .gradients import all_average

WEIGHTING_REGISTRY = Registry("STA_WEIGHTING")
WEIGHTING_REGISTRY.__doc__ = "Task-weighting and gradient methods, selected by cfg.STA.WEIGHTING.NAME."


@dataclass
class WeightingStep:
    """What a method may use at one optimizer step besides the task losses."""

    model: nn.Module  # the (unwrapped) multi-task model; see sta_d2.modeling.MultiTaskModel
    active: List[str]  # tasks allocated to at least one image of this step's batch
    iteration: int
    inputs: List[dict] = field(default_factory=list)  # the step's batch, allocation attached


class TaskWeighting(nn.Module):
    """Base class. ``backward`` must leave in ``.grad`` of the model's parameters (and of the
    method's own) the gradients of this step, and return the per-task weights to log."""

    CONFIG_NAME = ""  # node of cfg.STA.WEIGHTING holding CONFIG
    CONFIG: Dict = {}
    CONFIG_SPECS: Dict[str, Spec] = {}  # per CONFIG key
    #: whether the method differentiates gradients (a double backward through the model)
    double_backward = False
    #: what the model must record in its training forward (see MultiTaskModel.record)
    RECORDS: Tuple[str, ...] = ()
    #: file (in OUTPUT_DIR) that :meth:`export` writes after training; "" for none
    EXPORT_FILE = ""

    def __init__(self, tasks: List[str]):
        super().__init__()
        self.tasks = list(tasks)

    @classmethod
    def config_key(cls, key: str) -> str:
        """The config key of the hyper-parameter ``key`` of CONFIG."""
        return f"STA.WEIGHTING.{cls.CONFIG_NAME}.{key}"

    @classmethod
    def check_config(cls, **values) -> None:
        """Check hyper-parameter values, given by their CONFIG key, against CONFIG_SPECS."""
        for key, value in values.items():
            cls.CONFIG_SPECS[key].check(cls.config_key(key), value)

    @classmethod
    def from_config(cls, cfg, tasks: List[str], num_images: int) -> "TaskWeighting":
        """``num_images``: size of the training set; its images carry dataset indices
        0..num_images-1 (see sta_d2.data.DATASET_INDEX_KEY)."""
        return cls(tasks)

    def prepare_model(self, model: nn.Module) -> None:
        """Raise STAConfigError if the method cannot train ``model``, else have the model record
        what the method needs. A double backward cannot go through torchvision's roi_align,
        which the R-CNN box and mask heads use."""
        name = f"cfg.STA.WEIGHTING.NAME = {type(self).__name__!r}"
        if self.double_backward and any(isinstance(m, ROIPooler) for m in model.modules()):
            raise STAConfigError(
                f"{name} differentiates task gradients (double backward), which torchvision's "
                "roi_align in the R-CNN heads does not support"
            )
        missing = [r for r in self.RECORDS if r not in getattr(model, "RECORDABLE", ())]
        if missing:
            raise STAConfigError(f"{name} needs the model's {missing} of each training forward, which "
                                 f"{type(model).__name__} does not provide (DenseMultiTaskNet does)")
        if self.RECORDS:
            model.record(self.RECORDS)

    def param_groups(self, cfg) -> List[dict]:
        """Optimizer parameter groups of the method's own parameters (none by default)."""
        params = [p for p in self.parameters() if p.requires_grad]
        if not params:
            return []
        lr = cfg.STA.WEIGHTING.LR or cfg.SOLVER.BASE_LR
        return [{"params": params, "lr": lr, "weight_decay": 0.0}]

    def backward(self, task_losses: Dict[str, torch.Tensor], step: WeightingStep) -> Dict[str, float]:
        raise NotImplementedError

    def export(self, path: str, images: List[tuple]) -> None:
        """Write what the method learned per training image to ``path`` (methods with an
        ``EXPORT_FILE``); ``images``: (dataset index, image id, file name) of each."""
        raise NotImplementedError

    def average_gradients(self) -> None:
        """Average the gradients of the method's own parameters over processes (DDP averages
        only the model's), so that every process applies the same update to them."""
        for param in self.parameters():
            if param.grad is not None:
                param.grad = all_average(param.grad)


class LossWeighting(TaskWeighting):
    """A method that only scales the task losses: the step's loss is sum_t w_t * L_t (+ the
    method's own regulariser), differentiated once."""

    def weights(self, task_losses: Dict[str, torch.Tensor], step: WeightingStep) -> Dict[str, torch.Tensor]:
        raise NotImplementedError

    def regulariser(self, step: WeightingStep) -> torch.Tensor:
        return torch.zeros(())

    def backward(self, task_losses, step):
        weights = self.weights(task_losses, step)
        total = sum(weights[t] * task_losses[t] for t in self.tasks) + self.regulariser(step)
        total.backward()
        return {t: float(w.detach()) for t, w in weights.items()}


def build_weighting(cfg, tasks: List[str], num_images: int) -> TaskWeighting:
    return WEIGHTING_REGISTRY.get(cfg.STA.WEIGHTING.NAME).from_config(cfg, tasks, num_images)
