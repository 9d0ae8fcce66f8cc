"""DenseMultiTaskNet: a shared backbone with one head per dense task."""
from typing import Dict, List, Sequence

import torch
import torch.nn.functional as F
from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY, build_backbone
from detectron2.structures import ImageList
from torch import nn

from ...dense_tasks import DenseTask, build_dense_task, dense_task_names, get_dense_task
from ...specs import ConfigKeys, Key, fail, integer, list_of, one_of, text
from ..zero_loss import connected_zero
from ..multitask import MultiTaskModel
from ..task_set import resolve_tasks
from .heads import DENSE_HEAD_REGISTRY

CONFIG_KEYS = ConfigKeys({
    # The tasks, one head each: names of tasks registered in sta_d2.dense_tasks ("sem_seg",
    # "depth" (metres), "disparity" (pixels), "normal").
    "MODEL.DENSE.TASKS": Key(["sem_seg", "depth"],
                             list_of(one_of(dense_task_names), nonempty=True, distinct=True)),
    # Classes of the tasks that have classes ("sem_seg").
    "MODEL.DENSE.NUM_CLASSES": Key(13, integer(1)),
    # The label those tasks ignore; compared with int64 labels.
    "MODEL.DENSE.IGNORE_VALUE": Key(255, integer(-2 ** 63, 2 ** 63 - 1)),
    # The backbone output the heads read (one of the backbone's outputs: checked when it is built).
    "MODEL.DENSE.IN_FEATURE": Key("res5", text(nonempty=True)),
})


@CONFIG_KEYS.rule("MODEL.DENSE.TASKS", "MODEL.DENSE.NUM_CLASSES", "MODEL.DENSE.IGNORE_VALUE")
def _ignore_value_is_no_class(cfg):
    dense = cfg.MODEL.DENSE
    ignoring = [t for t in dense.TASKS if "ignore_value" in get_dense_task(t).CONTEXT]
    if ignoring and 0 <= dense.IGNORE_VALUE < dense.NUM_CLASSES:
        fail("MODEL.DENSE.IGNORE_VALUE", dense.IGNORE_VALUE,
             f"is a class label (0..{dense.NUM_CLASSES - 1}) of cfg.MODEL.DENSE.NUM_CLASSES = "
             f"{dense.NUM_CLASSES}; the label {', '.join(ignoring)} ignores must be none of them")


@META_ARCH_REGISTRY.register()
class DenseMultiTaskNet(MultiTaskModel, nn.Module):
    """Shared backbone (e.g. a dilated ResNet-50 or SegNet) and one head per task.

    Each task is a descriptor of ``sta_d2.dense_tasks``, which gives its head's channels, the
    form of its targets, its loss and its predictions. Inputs: detectron2-style dicts with
    ``"image"`` (3, H, W) and, in training, one target per task under the task's name (as
    ``DenseDatasetMapper`` makes it, e.g. ``"sem_seg"`` (H, W) int64 with the ignore value,
    ``"depth"`` (1, H, W) with 0 = invalid). In training a task's head runs only on the images
    allocated that task (``"sta_tasks"``), so its loss (a mean over those images' valid pixels)
    is the loss of that sub-batch, and images not allocated a task cost that head nothing.
    Returns ``{"loss_<task>": ...}`` in training and, at inference, one dict per image with each
    task's output (:meth:`DenseTask.inference_output`: class logits (C, H, W) for sem_seg, unit
    normals) at the input resolution.

    Side outputs for weighting methods (:meth:`MultiTaskModel.request_side_outputs`):
    ``"image_losses"``, per task (allocated image indices, per-image losses) (ILTP);
    ``"joint_outputs"``, see :meth:`joint_outputs` (JTR; every head then runs on every image).
    """

    SIDE_OUTPUTS = ("image_losses", "joint_outputs")

    @configurable
    def __init__(self, *, backbone, in_feature: str, heads: Dict[str, nn.Module],
                 dense_tasks: Sequence[DenseTask], pixel_mean: List[float], pixel_std: List[float]):
        """
        Args:
            heads: task name -> its head, in the order of the tasks.
            dense_tasks: the descriptors of the tasks of ``heads``.
        """
        super().__init__()
        self.backbone = backbone
        self.in_feature = in_feature
        self.heads = nn.ModuleDict(heads)
        self.tasks = list(heads)
        self.dense_tasks = {t.name: t for t in dense_tasks}
        if list(self.dense_tasks) != self.tasks:
            raise ValueError(f"heads of tasks {self.tasks} given with the descriptors of "
                             f"{list(self.dense_tasks)}")
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(-1, 1, 1), False)
        self.track_shared_representation()

    @classmethod
    def from_config(cls, cfg):
        backbone = build_backbone(cfg)
        shapes = backbone.output_shape()
        in_feature = cfg.MODEL.DENSE.IN_FEATURE
        if in_feature not in shapes:
            fail("MODEL.DENSE.IN_FEATURE", in_feature, f"the backbone outputs {sorted(shapes)}")
        head_cls = DENSE_HEAD_REGISTRY.get(cfg.MODEL.DENSE.HEAD_NAME)
        context = {"num_classes": cfg.MODEL.DENSE.NUM_CLASSES, "ignore_value": cfg.MODEL.DENSE.IGNORE_VALUE}
        tasks = [build_dense_task(t, **context) for t in resolve_tasks(cfg, cls.model_tasks(cfg))]
        return {
            "backbone": backbone,
            "in_feature": in_feature,
            "heads": {t.name: head_cls(cfg, shapes[in_feature].channels, t.channels) for t in tasks},
            "dense_tasks": tasks,
            "pixel_mean": cfg.MODEL.PIXEL_MEAN,
            "pixel_std": cfg.MODEL.PIXEL_STD,
        }

    @classmethod
    def model_tasks(cls, cfg):
        """The tasks of the model ``cfg`` describes."""
        return list(cfg.MODEL.DENSE.TASKS)

    @property
    def device(self):
        return self.pixel_mean.device

    @property
    def joint_channels(self) -> int:
        """Channels of :meth:`joint_outputs`: the sum of the tasks' joint channels."""
        return sum(task.joint_channels for task in self.dense_tasks.values())

    def forward(self, batched_inputs):
        images = [(x["image"].to(self.device) - self.pixel_mean) / self.pixel_std for x in batched_inputs]
        images = ImageList.from_tensors(images, self.backbone.size_divisibility)
        features = self.backbone(images.tensor)[self.in_feature]
        size = images.tensor.shape[-2:]
        if not self.training:
            return self.inference(batched_inputs, images, features)
        assignment = self.allocation(batched_inputs)
        # JTR compares every task's prediction on every image, so then every head runs on all.
        everywhere = {t: self.predict(t, features, size) for t in self.tasks} if self.wants_side_output("joint_outputs") else {}
        losses, image_losses = {}, {}
        for task in self.tasks:
            indices = assignment.images(task)
            if not indices:
                losses[f"loss_{task}"] = connected_zero(self.heads[task].parameters())
                continue
            prediction = everywhere[task][indices] if everywhere else self.predict(task, features[indices], size)
            target = self.targets(task, [batched_inputs[i] for i in indices], size)
            losses[f"loss_{task}"] = self.dense_tasks[task].loss(prediction, target)
            if self.wants_side_output("image_losses"):
                per_image = self.dense_tasks[task].loss(prediction, target, per_image=True)
                image_losses[task] = (indices, per_image)
        self._side_outputs = {}
        if self.wants_side_output("image_losses"):
            self._side_outputs["image_losses"] = image_losses
        if self.wants_side_output("joint_outputs"):
            self._side_outputs["joint_outputs"] = self.joint_outputs(batched_inputs, everywhere, assignment)
        return losses

    def targets(self, task, inputs, size) -> torch.Tensor:
        """The ``task`` targets of ``inputs``, padded to ``size`` with "invalid" and stacked."""
        pad_value = self.dense_tasks[task].invalid_value
        return torch.stack([_pad_to(x[task].to(self.device), size, pad_value) for x in inputs])

    def joint_outputs(self, batched_inputs, predictions, assignment):
        """Every task's prediction in label space (:meth:`DenseTask.prediction`: class
        probabilities, unit normals, raw depth...), stacked over tasks: (predictions, targets),
        each (N, :attr:`joint_channels`, H, W). Targets are the labels (:meth:`DenseTask.joint_target`:
        one-hot classes...) where a task is allocated to an image and the pixel is valid, else the
        detached prediction (JTR's joint tensors)."""
        outputs, targets = [], []
        for name in self.tasks:
            task = self.dense_tasks[name]
            output = task.prediction(predictions[name])
            target = output.detach().clone()
            indices = assignment.images(name)
            if indices:
                label = self.targets(name, [batched_inputs[i] for i in indices], output.shape[-2:])
                valid = task.valid(label)[:, None]
                joint = task.joint_target(label).nan_to_num().to(target.dtype)
                target[indices] = torch.where(valid, joint, target[indices])
            outputs.append(output)
            targets.append(target)
        return torch.cat(outputs, dim=1), torch.cat(targets, dim=1)

    def predict(self, task, features, size):
        """The head's output for ``features``, upsampled to the padded input ``size``."""
        return F.interpolate(self.heads[task](features), size=size, mode="bilinear", align_corners=False)

    def inference(self, batched_inputs, images, features):
        predictions = {t: self.predict(t, features, images.tensor.shape[-2:]) for t in self.tasks}
        results = []
        for i, (x, (h, w)) in enumerate(zip(batched_inputs, images.image_sizes)):
            out_size = (x.get("height", h), x.get("width", w))
            result = {}
            for task, prediction in predictions.items():
                p = prediction[i : i + 1, :, :h, :w]
                if out_size != (h, w):
                    p = F.interpolate(p, size=out_size, mode="bilinear", align_corners=False)
                result[task] = self.dense_tasks[task].inference_output(p)[0]
            results.append(result)
        return results

    def task_losses(self, loss_dict: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """The loss of each task, in ``self.tasks`` order."""
        return {t: loss_dict[f"loss_{t}"] for t in self.tasks}


def _pad_to(target: torch.Tensor, size, value) -> torch.Tensor:
    """Pad a (H, W) or (C, H, W) target on the bottom/right to ``size`` with ``value``."""
    h, w = target.shape[-2:]
    return F.pad(target, (0, size[1] - w, 0, size[0] - h), value=value)
