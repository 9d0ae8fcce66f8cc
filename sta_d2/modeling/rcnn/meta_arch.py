"""GeneralizedRCNN and PanopticFPN that apply a per-image task allocation to their losses."""
from typing import Dict, List, Sequence

import torch
from detectron2.config import configurable
from detectron2.modeling import GeneralizedRCNN, META_ARCH_REGISTRY, PanopticFPN
from detectron2.structures import Boxes, Instances

from ...specs import fail, value_at
from ..allocation_scope import allocation_scope
from ..multitask import MultiTaskModel
from ..task_set import resolve_tasks
from .losses import loss_task
from .sampling import task_streams
from .wrap import allocating_class

# The tasks whose losses depend on the RPN's and ROI heads' random sampling.
SAMPLED_TASKS = ("det", "mask", "keypoint")


class _AllocatedMetaArch(MultiTaskModel):
    """Mixin: build the heads the config names with allocation applied (:func:`allocating_class`),
    read each input's allocated tasks and make them visible to the heads."""

    LABEL_KEYS = {"det": "instances", "mask": "instances", "keypoint": "instances"}
    #: the keys naming the heads that apply allocations
    HEAD_KEYS = ("MODEL.PROPOSAL_GENERATOR.NAME", "MODEL.ROI_HEADS.NAME")

    @configurable
    def __init__(self, *, tasks: Sequence[str], **kwargs):
        super().__init__(**kwargs)
        self.tasks = list(tasks)
        self.track_shared_representation()

    @classmethod
    def from_config(cls, cfg):
        tasks = resolve_tasks(cfg, cls.model_tasks(cfg))
        allocating = cfg.clone()
        allocating.defrost()
        for key in cls.HEAD_KEYS:
            parent, leaf = key.rsplit(".", 1)
            value_at(allocating, parent)[leaf] = allocating_class(cfg, key).__name__
        return {**super().from_config(allocating), "tasks": tasks}

    @classmethod
    def model_tasks(cls, cfg) -> List[str]:
        """The tasks of the model ``cfg`` describes; fails naming the key of a part that cannot
        apply allocations."""
        if cfg.MODEL.LOAD_PROPOSALS:
            fail("MODEL.LOAD_PROPOSALS", True, "precomputed proposals are not supported")
        for part in ("MASK", "KEYPOINT"):
            if cfg.MODEL[f"{part}_ON"] and cfg.MODEL.ROI_BOX_HEAD.TRAIN_ON_PRED_BOXES:
                fail("MODEL.ROI_BOX_HEAD.TRAIN_ON_PRED_BOXES", True, f"with MODEL.{part}_ON, the "
                     f"{part.lower()} head would train on box predictions for images not allocated 'det'")
        if cfg.MODEL.KEYPOINT_ON and not cfg.MODEL.ROI_KEYPOINT_HEAD.NORMALIZE_LOSS_BY_VISIBLE_KEYPOINTS:
            fail("MODEL.ROI_KEYPOINT_HEAD.NORMALIZE_LOSS_BY_VISIBLE_KEYPOINTS", False, "the keypoint loss "
                 "would be divided by the whole batch's number of images, not by the sub-batch's")
        for key in cls.HEAD_KEYS:
            allocating_class(cfg, key)
        return ["det"] + ["mask"] * cfg.MODEL.MASK_ON + ["keypoint"] * cfg.MODEL.KEYPOINT_ON

    def forward(self, batched_inputs):
        if not self.training:
            return super().forward(batched_inputs)
        sampled = [t for t in self.tasks if t in SAMPLED_TASKS]
        with allocation_scope(self.allocation(batched_inputs)), \
                task_streams(sampled, len(batched_inputs), self.device):
            return super().forward([self._with_placeholder_targets(x) for x in batched_inputs])

    def _with_placeholder_targets(self, x: dict) -> dict:
        """detectron2 reads every input's targets; an input without labels for a task (never
        allocated it) gets empty instances / an all-ignored semantic map in their place."""
        h, w = x["image"].shape[-2:]
        filled = dict(x)
        if "instances" not in x:
            filled["instances"] = Instances((h, w), gt_boxes=Boxes(torch.zeros(0, 4)),
                                            gt_classes=torch.zeros(0, dtype=torch.int64))
        if "sem_seg" in self.tasks and "sem_seg" not in x:
            filled["sem_seg"] = torch.full((h, w), self.sem_seg_head.ignore_value, dtype=torch.int64)
        return filled

    def task_losses(self, loss_dict: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """Sum the model's losses per task, in ``self.tasks`` order."""
        grouped = {t: [] for t in self.tasks}
        for name, value in loss_dict.items():
            grouped[loss_task(name)].append(value)
        return {t: sum(v) for t, v in grouped.items()}


@META_ARCH_REGISTRY.register()
class STAGeneralizedRCNN(_AllocatedMetaArch, GeneralizedRCNN):
    """GeneralizedRCNN (Faster / Mask / Keypoint R-CNN, also C4 and Cascade) with tasks "det" and,
    with MODEL.MASK_ON, "mask", with MODEL.KEYPOINT_ON, "keypoint"."""


@META_ARCH_REGISTRY.register()
class STAPanopticFPN(_AllocatedMetaArch, PanopticFPN):
    """PanopticFPN with tasks "det", "mask" (with MODEL.MASK_ON) and "sem_seg"."""

    HEAD_KEYS = _AllocatedMetaArch.HEAD_KEYS + ("MODEL.SEM_SEG_HEAD.NAME",)

    @classmethod
    def model_tasks(cls, cfg):
        return super().model_tasks(cfg) + ["sem_seg"]
