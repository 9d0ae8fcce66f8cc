import csv
import os

import torch
from torch import nn

from ..specs import LOG_VARIANCE, Key, boolean, fail, number
from .base import WEIGHTING_REGISTRY, TaskWeighting
from .gradients import scaled


@WEIGHTING_REGISTRY.register()
class InstanceLevelTaskParameters(TaskWeighting):
    """Instance-level task parameters (ILTP; Vasu, Saxena and Tuzel, arXiv 2106.06129).

    Every training image i has one learnable parameter per task t, s_it = log sigma_it^2 (from
    ``INIT``), indexed by the image's stable dataset index (``WeightingStep.dataset_indices``,
    given by :func:`sta_d2.data.training_dataset_dicts`). With l_it the loss of task t on image i alone
    (mean over its valid pixels), the step's loss is

        sum_t mean_{i allocated t} [exp(-s_it) l_it + s_it]  +  WEIGHT_DECAY / 2 * sum_{i, t} s_it^2,

    the last sum over the step's (image, task) pairs only, so images outside the batch are not
    decayed. An image whose labels for a task are corrupt keeps a high loss and drifts to a high
    s_it (a low weight): :meth:`export` writes every s_it per image so they can be ranked.

    In that form the mean of s_it over a task's images also acts as a whole-task weight (as in
    :class:`UncertaintyWeighting`), so the method re-weights tasks as much as images. With
    ``TASK_NORMALISED``, the s_it are learned by the same objective (losses detached), but the
    model's loss weighs image i of task t by exp(-s_it) / mean_{j allocated t} exp(-s_jt): weights
    that only redistribute a task's loss among the step's images (mean 1, the task weighing 1 as
    with equal weighting). docs/claims.md gives the measurements behind the option.

    The parameters are one parameter group of the run's optimizer (``SOLVER.OPTIMIZER``) with
    their own ``LR``, no weight decay but the term above, and, with SGD, their own ``MOMENTUM``
    (0 keeps every step's update to the batch's parameters); Adam has no momentum setting, so a
    non-zero ``MOMENTUM`` with Adam is refused. The group follows detectron2's LR schedule like
    every group.
    This is our reading of the paper's instance-level uncertainty form; its exact optimizer
    hyper-parameters were not available offline, so the defaults are ours. Per-image losses come
    from the model (``SIDE_OUTPUTS``): dense models only, as detectron2's R-CNN losses are normalised
    over the whole batch's sampled anchors and proposals, not per image.
    """

    CONFIG_NAME = "ILTP"
    CONFIG = {"INIT": Key(0.0, LOG_VARIANCE), "LR": Key(0.1, number(0)), "MOMENTUM": Key(0.0, number(0)),
              "WEIGHT_DECAY": Key(0.001, number(0)), "TASK_NORMALISED": Key(False, boolean())}
    SIDE_OUTPUTS = ("image_losses",)
    EXPORT_FILE = "instance_task_parameters.csv"

    def __init__(self, tasks, num_images, init=0.0, lr=0.1, momentum=0.0, weight_decay=0.001,
                 task_normalised=False):
        super().__init__(tasks)
        self.task_normalised = bool(task_normalised)
        if num_images < 1:
            raise ValueError("ILTP needs the number of training images (their dataset indices)")
        self.lr, self.momentum, self.weight_decay = float(lr), float(momentum), float(weight_decay)
        self.log_vars = nn.Parameter(torch.full((num_images, len(self.tasks)), float(init)))

    @classmethod
    def from_config(cls, cfg, model, num_images):
        return cls(model.tasks, num_images, **cls.hyper_parameters(cfg))

    def param_groups(self, cfg):
        if self.momentum and cfg.SOLVER.OPTIMIZER != "SGD":
            fail("STA.WEIGHTING.ILTP.MOMENTUM", self.momentum,
                 f"applies to SGD only, not to cfg.SOLVER.OPTIMIZER = {cfg.SOLVER.OPTIMIZER!r}")
        momentum = {"momentum": self.momentum} if cfg.SOLVER.OPTIMIZER == "SGD" else {}
        return [{"params": [self.log_vars], "lr": self.lr, "weight_decay": 0.0, **momentum}]

    def backward(self, task_losses, step):
        image_losses = step.model.side_outputs()["image_losses"]
        total, weights = 0.0, {}
        for t, task in enumerate(self.tasks):
            if task not in image_losses:  # no image of this process has the task: its exact zero
                total = total + task_losses[task]
                weights[task] = 1.0
                continue
            images, losses = image_losses[task]
            rows = torch.tensor([step.dataset_indices[i] for i in images], device=self.log_vars.device)
            s = self.log_vars[rows, t]
            decay = 0.5 * self.weight_decay * (s ** 2).sum()
            losses = losses.float()
            if self.task_normalised:
                precision = torch.exp(-s.detach())
                relative = precision / precision.mean()
                total = total + (relative * losses).mean() + (torch.exp(-s) * losses.detach() + s).mean() + decay
                weights[task] = 1.0
            else:
                total = total + (torch.exp(-s) * losses + s).mean() + decay
                weights[task] = torch.exp(-s.detach()).mean()
        scaled(total).backward()
        return weights

    def export(self, path, images):
        """Write ``path`` (CSV): per training image (``images``: (dataset index, image id, file
        name)), its s_it per task; sort a task's column descending to rank suspect labels."""
        values = self.log_vars.detach().cpu().tolist()
        tmp = f"{path}.tmp"
        with open(tmp, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["dataset_index", "image_id", "file_name", *(f"log_var/{t}" for t in self.tasks)])
            for index, image_id, file_name in sorted(images, key=lambda x: x[0]):
                writer.writerow([index, image_id, file_name, *values[index]])
        os.replace(tmp, path)
