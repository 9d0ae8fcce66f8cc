"""DenseMultiTaskNet: a shared backbone with one head per dense task."""
from typing import Dict, List

import torch
import torch.nn.functional as F
from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY, build_backbone
from detectron2.structures import ImageList
from torch import nn

from ...config import STAConfigError, check_keys
from ..allocation_scope import connected_zero
from ..multitask import MultiTaskModel
from ..task_set import resolve_tasks
from .heads import DENSE_HEAD_REGISTRY
from .losses import cosine_loss, l1_loss, segmentation_loss

# Output channels of the regression tasks ("sem_seg" has MODEL.DENSE.NUM_CLASSES).
REGRESSION_CHANNELS = {"depth": 1, "disparity": 1, "normal": 3}
DENSE_TASKS = ("sem_seg", *REGRESSION_CHANNELS)


@META_ARCH_REGISTRY.register()
class DenseMultiTaskNet(MultiTaskModel, nn.Module):
    """Shared backbone (e.g. a dilated ResNet-50 or SegNet) and one head per task.

    Inputs: detectron2-style dicts with ``"image"`` (3, H, W) and, in training, one target per
    task under the task's name (``"sem_seg"`` (H, W) int64 with the ignore value; ``"depth"`` and
    ``"disparity"`` (1, H, W), 0 = invalid; ``"normal"`` (3, H, W), 0 = invalid). In training a
    task's head runs only on the images allocated that task (``"sta_tasks"``), so its loss (a
    mean over those images' valid pixels) is the loss of that sub-batch, and images not
    allocated a task cost that head nothing. Returns ``{"loss_<task>": ...}`` in training and,
    at inference, one dict per image with each task's prediction at the input resolution
    (``"sem_seg"``: class logits (C, H, W); ``"normal"``: unit vectors).

    Recordable for weighting methods (:meth:`MultiTaskModel.record`): ``"image_losses"``, per
    task (allocated image indices, per-image losses) (ILTP); ``"joint_outputs"``, see
    :meth:`joint_outputs` (JTR; every head then runs on every image).
    """

    RECORDABLE = ("image_losses", "joint_outputs")

    @configurable
    def __init__(self, *, backbone, in_feature: str, heads: Dict[str, nn.Module], ignore_value: int,
                 pixel_mean: List[float], pixel_std: List[float]):
        super().__init__()
        self.backbone = backbone
        self.in_feature = in_feature
        self.heads = nn.ModuleDict(heads)
        self.tasks = list(heads)
        self.ignore_value = ignore_value
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(-1, 1, 1), False)
        self.track_shared_representation()

    @classmethod
    def from_config(cls, cfg):
        check_keys(cfg, "MODEL.DENSE")  # the heads read it too
        backbone = build_backbone(cfg)
        shapes = backbone.output_shape()
        in_feature = cfg.MODEL.DENSE.IN_FEATURE
        if in_feature not in shapes:
            raise STAConfigError(
                f"cfg.MODEL.DENSE.IN_FEATURE = {in_feature!r}: the backbone outputs {sorted(shapes)}"
            )
        head_cls = DENSE_HEAD_REGISTRY.get(cfg.MODEL.DENSE.HEAD_NAME)
        channels = {"sem_seg": cfg.MODEL.DENSE.NUM_CLASSES, **REGRESSION_CHANNELS}
        tasks = resolve_tasks(cfg, list(cfg.MODEL.DENSE.TASKS))
        return {
            "backbone": backbone,
            "in_feature": in_feature,
            "heads": {t: head_cls(cfg, shapes[in_feature].channels, channels[t]) for t in tasks},
            "ignore_value": cfg.MODEL.DENSE.IGNORE_VALUE,
            "pixel_mean": cfg.MODEL.PIXEL_MEAN,
            "pixel_std": cfg.MODEL.PIXEL_STD,
        }

    @property
    def device(self):
        return self.pixel_mean.device

    def forward(self, batched_inputs):
        images = [(x["image"].to(self.device) - self.pixel_mean) / self.pixel_std for x in batched_inputs]
        images = ImageList.from_tensors(images, self.backbone.size_divisibility)
        features = self.backbone(images.tensor)[self.in_feature]
        size = images.tensor.shape[-2:]
        if not self.training:
            return self.inference(batched_inputs, images, features)
        assignment = self.allocation(batched_inputs)
        # JTR compares every task's prediction on every image, so then every head runs on all.
        everywhere = {t: self.predict(t, features, size) for t in self.tasks} if self.recording("joint_outputs") else {}
        losses, image_losses = {}, {}
        for task in self.tasks:
            indices = assignment.images(task)
            if not indices:
                losses[f"loss_{task}"] = connected_zero(self.heads[task].parameters())
                continue
            prediction = everywhere[task][indices] if everywhere else self.predict(task, features[indices], size)
            target = self.targets(task, [batched_inputs[i] for i in indices], size)
            losses[f"loss_{task}"] = self.loss(task, prediction, target)
            if self.recording("image_losses"):
                image_losses[task] = (indices, self.loss(task, prediction, target, per_image=True))
        self._records = {}
        if self.recording("image_losses"):
            self._records["image_losses"] = image_losses
        if self.recording("joint_outputs"):
            self._records["joint_outputs"] = self.joint_outputs(batched_inputs, everywhere, assignment)
        return losses

    def targets(self, task, inputs, size) -> torch.Tensor:
        """The ``task`` targets of ``inputs``, padded to ``size`` with "invalid" and stacked."""
        pad_value = self.ignore_value if task == "sem_seg" else 0
        return torch.stack([_pad_to(x[task].to(self.device), size, pad_value) for x in inputs])

    def loss(self, task, prediction, target, per_image=False):
        """The task's loss over the valid pixels of the images (per image if ``per_image``)."""
        if task == "sem_seg":
            return segmentation_loss(prediction, target, self.ignore_value, per_image)
        if task == "normal":
            return cosine_loss(prediction, target, per_image)
        return l1_loss(prediction, target, per_image)

    def joint_outputs(self, batched_inputs, predictions, assignment):
        """Every task's output in label space, stacked over tasks: (predictions, targets), each
        (N, sum of task channels, H, W). Predictions are class probabilities, unit normals and
        raw depth/disparity; targets are the labels (one-hot classes) where a task is allocated
        to an image and the pixel is valid, else the detached prediction (JTR's joint tensors)."""
        outputs, targets = [], []
        for task in self.tasks:
            logits = predictions[task]
            output = logits.softmax(dim=1) if task == "sem_seg" else (
                F.normalize(logits, dim=1) if task == "normal" else logits)
            target = output.detach().clone()
            indices = assignment.images(task)
            if indices:
                label = self.targets(task, [batched_inputs[i] for i in indices], logits.shape[-2:])
                if task == "sem_seg":
                    valid = (label != self.ignore_value)[:, None]
                    label = F.one_hot(label.clamp_min(0) * valid[:, 0], logits.shape[1]).permute(0, 3, 1, 2)
                elif task == "normal":
                    valid = label.abs().sum(dim=1, keepdim=True) > 0
                else:
                    valid = torch.isfinite(label) & (label > 0)
                target[indices] = torch.where(valid, label.nan_to_num().to(target.dtype), target[indices])
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
                result[task] = F.normalize(p[0], dim=0) if task == "normal" else p[0]
            results.append(result)
        return results

    def task_losses(self, loss_dict: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """The loss of each task, in ``self.tasks`` order."""
        return {t: loss_dict[f"loss_{t}"] for t in self.tasks}


def _pad_to(target: torch.Tensor, size, value) -> torch.Tensor:
    """Pad a (H, W) or (C, H, W) target on the bottom/right to ``size`` with ``value``."""
    h, w = target.shape[-2:]
    return F.pad(target, (0, size[1] - w, 0, size[0] - h), value=value)
