"""The one interface that turns per-task losses into the gradients of an optimizer step.

A method is a :class:`TaskWeighting` subclass in its own module, registered in
``WEIGHTING_REGISTRY`` and selected by ``cfg.STA.WEIGHTING.NAME``. Its hyper-parameters are the
class attribute ``CONFIG`` (key -> :class:`sta_d2.specs.Key`), installed as
``cfg.STA.WEIGHTING.<CONFIG_NAME>.<key>`` and passed to its constructor as the lower-case
argument of the same name. Learnable quantities (e.g. uncertainty weights) are its
``nn.Parameter``s: the trainer adds them to the optimizer as extra parameter groups
(:meth:`TaskWeighting.param_groups`) and averages their gradients over processes. Everything it
keeps is in its ``state_dict`` (parameters, buffers and ``get_extra_state``), which the trainer
checkpoints and restores on resume. Under mixed precision a method differentiates its losses
through :func:`sta_d2.weighting.gradients.scaled` (the helpers there do) and so leaves in ``.grad``
the gradients times the trainer's loss scale. A method that needs
more of the training forward than the task losses (per-image losses, predictions) names it in
its ``SIDE_OUTPUTS``; models list what they can produce in theirs.
"""
from dataclasses import dataclass, field
from typing import Dict, List, Tuple

import torch
from detectron2.modeling.poolers import ROIPooler
from detectron2.utils.registry import Registry
from torch import nn

from ..comm import all_average
from ..specs import ConfigKeys, Key, STAConfigError, argument_name, fail, number, one_of, registered
from .gradients import scaled

WEIGHTING_REGISTRY = Registry("STA_WEIGHTING")
WEIGHTING_REGISTRY.__doc__ = "Task-weighting and gradient methods, selected by cfg.STA.WEIGHTING.NAME."

CONFIG_KEYS = ConfigKeys({
    # How task losses become the update: a class registered in WEIGHTING_REGISTRY.
    "STA.WEIGHTING.NAME": Key("EqualWeighting", registered(WEIGHTING_REGISTRY)),
    # A loss weighting (a LossWeighting, e.g. "UncertaintyWeighting") whose weighted losses the
    # gradient method NAME combines (e.g. PCGrad + UW); "": none (the method sees the raw losses).
    "STA.WEIGHTING.LOSS_WEIGHTING": Key("", one_of(lambda: [""] + loss_weighting_names())),
    # Learning rate of the method's own parameters (0: SOLVER.BASE_LR).
    "STA.WEIGHTING.LR": Key(0.0, number(0)),
})


def loss_weighting_names() -> List[str]:
    return sorted(name for name, cls in WEIGHTING_REGISTRY if issubclass(cls, LossWeighting))


@CONFIG_KEYS.rule("STA.WEIGHTING.LOSS_WEIGHTING", "STA.WEIGHTING.NAME")
def _loss_weighting_needs_a_gradient_method(cfg):
    loss_weighting, name = cfg.STA.WEIGHTING.LOSS_WEIGHTING, cfg.STA.WEIGHTING.NAME
    if loss_weighting and not WEIGHTING_REGISTRY.get(name).combines_loss_weights:
        fail("STA.WEIGHTING.LOSS_WEIGHTING", loss_weighting,
             f"combines with a gradient method that takes weighted task losses, not with cfg.STA.WEIGHTING.NAME = "
             f"{name!r}; use one of {sorted(n for n, c in WEIGHTING_REGISTRY if c.combines_loss_weights)}")


@dataclass
class WeightingStep:
    """What a method may use at one optimizer step besides the task losses."""

    model: nn.Module  # the (unwrapped) multi-task model; see sta_d2.modeling.MultiTaskModel
    active: List[str]  # tasks allocated to at least one image of this step's batch
    iteration: int
    # the dataset index of each image of the step's batch (see sta_d2.data.DATASET_INDEX_KEY)
    dataset_indices: List[int] = field(default_factory=list)


class TaskWeighting(nn.Module):
    """Base class. ``backward`` must leave in ``.grad`` of the model's parameters (and of the
    method's own) the gradients of this step, and return the per-task weights to log (floats or
    0-dim tensors: the trainer brings a step's tensors to the host in one transfer, so a method
    need not synchronise with the device)."""

    CONFIG_NAME = ""  # node of cfg.STA.WEIGHTING holding CONFIG
    CONFIG: Dict[str, Key] = {}
    #: whether the method differentiates gradients (a double backward through the model)
    double_backward = False
    #: what the model must produce besides its losses (see MultiTaskModel.request_side_outputs)
    SIDE_OUTPUTS: Tuple[str, ...] = ()
    #: file (in OUTPUT_DIR) that :meth:`export` writes after training; "" for none
    EXPORT_FILE = ""
    #: whether the method combines per-task gradients of any losses it is given, so that a loss
    #: weighting can weigh them first (``STA.WEIGHTING.LOSS_WEIGHTING``)
    combines_loss_weights = False

    def __init__(self, tasks: List[str]):
        super().__init__()
        self.tasks = list(tasks)

    @classmethod
    def hyper_parameters(cls, cfg) -> Dict:
        """The values of ``CONFIG`` in ``cfg``, by constructor argument name."""
        node = cfg.STA.WEIGHTING[cls.CONFIG_NAME] if cls.CONFIG else {}
        return {argument_name(key): node[key] for key in cls.CONFIG}

    @classmethod
    def from_config(cls, cfg, model, num_images: int) -> "TaskWeighting":
        """The method for ``model`` (its ``tasks``, in order); ``num_images``: size of the
        training set, whose images carry dataset indices 0..num_images-1."""
        return cls(model.tasks, **cls.hyper_parameters(cfg))

    def active_tasks(self, step: WeightingStep) -> List[str]:
        """The method's tasks that are active this step, in the method's order."""
        return [t for t in self.tasks if t in step.active]

    @classmethod
    def check_model(cls, model: nn.Module) -> None:
        """Raise STAConfigError if the method cannot train ``model``. A double backward cannot go
        through torchvision's roi_align, which the R-CNN box and mask heads use."""
        name = f"cfg.STA.WEIGHTING.NAME = {cls.__name__!r}"
        if cls.double_backward and any(isinstance(m, ROIPooler) for m in model.modules()):
            raise STAConfigError(
                f"{name} differentiates task gradients (double backward), which torchvision's "
                "roi_align in the R-CNN heads does not support"
            )
        missing = [r for r in cls.SIDE_OUTPUTS if r not in getattr(model, "SIDE_OUTPUTS", ())]
        if missing:
            raise STAConfigError(f"{name} needs the model's {missing} of each training forward, which "
                                 f"{type(model).__name__} does not provide (DenseMultiTaskNet does)")

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

    def observe(self, task_losses: Dict[str, torch.Tensor]) -> None:
        """Called with the step's task losses once its gradients are computed (none by default)."""

    def backward(self, task_losses, step):
        weights = self.weights(task_losses, step)
        total = sum(weights[t] * task_losses[t] for t in self.tasks) + self.regulariser(step)
        scaled(total).backward()
        self.observe(task_losses)
        return {t: w.detach() for t, w in weights.items()}


def method_config_keys() -> Dict[str, Key]:
    """The hyper-parameter keys of every registered method, by dotted name."""
    return {f"STA.WEIGHTING.{cls.CONFIG_NAME}.{key}": declared
            for _, cls in WEIGHTING_REGISTRY for key, declared in cls.CONFIG.items()}
