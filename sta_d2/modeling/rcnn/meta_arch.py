"""GeneralizedRCNN and PanopticFPN that apply a per-image task allocation to their losses."""
from typing import Dict, List, Sequence

import torch
from detectron2.config import configurable
from detectron2.modeling import (
    META_ARCH_REGISTRY,
    PROPOSAL_GENERATOR_REGISTRY,
    ROI_HEADS_REGISTRY,
    SEM_SEG_HEADS_REGISTRY,
    GeneralizedRCNN,
    PanopticFPN,
)
from detectron2.structures import Boxes, Instances

from ...specs import fail, value_at
from ..allocation_scope import allocation_scope
from ..multitask import MultiTaskModel
from ..task_set import resolve_tasks
from .roi_heads import STAROIHeads
from .rpn import STARPN
from .sampling import task_streams
from .semantic_seg import STASemSegFPNHead

# Which task each detectron2 loss belongs to.
LOSS_TASKS = {
    "loss_rpn_cls": "det",
    "loss_rpn_loc": "det",
    "loss_cls": "det",
    "loss_box_reg": "det",
    "loss_mask": "mask",
    "loss_sem_seg": "sem_seg",
}

# The tasks whose losses depend on the RPN's and ROI heads' random sampling.
SAMPLED_TASKS = ("det", "mask")


def _require(registry, key, cfg, allocating):
    """Fail naming ``key`` unless the class it names in ``registry`` is ``allocating`` (or a
    subclass)."""
    name = value_at(cfg, key)
    try:
        registered = registry.get(name)
    except KeyError as e:
        fail(key, name, str(e))
    if not (isinstance(registered, type) and issubclass(registered, allocating)):
        fail(key, name, f"does not apply task allocations; use {allocating.__name__!r}")


class _AllocatedMetaArch(MultiTaskModel):
    """Mixin: read each input's allocated tasks and make them visible to the heads."""

    LABEL_KEYS = {"det": "instances", "mask": "instances"}

    @configurable
    def __init__(self, *, tasks: Sequence[str], **kwargs):
        super().__init__(**kwargs)
        self.tasks = list(tasks)
        self.track_shared_representation()

    @classmethod
    def from_config(cls, cfg):
        ret = super().from_config(cfg)
        ret["tasks"] = resolve_tasks(cfg, cls.model_tasks(cfg))
        return ret

    @classmethod
    def model_tasks(cls, cfg) -> List[str]:
        """The tasks of the model ``cfg`` describes; fails naming the key of a part that cannot
        apply allocations."""
        if cfg.MODEL.LOAD_PROPOSALS:
            fail("MODEL.LOAD_PROPOSALS", True, "precomputed proposals are not supported")
        if cfg.MODEL.KEYPOINT_ON:
            fail("MODEL.KEYPOINT_ON", True, "keypoints are not an sta_d2 task")
        if cfg.MODEL.MASK_ON and cfg.MODEL.ROI_BOX_HEAD.TRAIN_ON_PRED_BOXES:
            fail("MODEL.ROI_BOX_HEAD.TRAIN_ON_PRED_BOXES", True, "with MODEL.MASK_ON, the mask head "
                 "would train on box predictions for images not allocated 'det'")
        _require(PROPOSAL_GENERATOR_REGISTRY, "MODEL.PROPOSAL_GENERATOR.NAME", cfg, STARPN)
        _require(ROI_HEADS_REGISTRY, "MODEL.ROI_HEADS.NAME", cfg, STAROIHeads)
        return ["det", "mask"] if cfg.MODEL.MASK_ON else ["det"]

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
            if name not in LOSS_TASKS:
                raise KeyError(f"loss {name!r} belongs to no sta_d2 task (known: {sorted(LOSS_TASKS)})")
            grouped[LOSS_TASKS[name]].append(value)
        return {t: sum(v) for t, v in grouped.items()}


@META_ARCH_REGISTRY.register()
class STAGeneralizedRCNN(_AllocatedMetaArch, GeneralizedRCNN):
    """GeneralizedRCNN (Faster / Mask R-CNN) with tasks "det" and, with MODEL.MASK_ON, "mask"."""


@META_ARCH_REGISTRY.register()
class STAPanopticFPN(_AllocatedMetaArch, PanopticFPN):
    """PanopticFPN with tasks "det", "mask" (with MODEL.MASK_ON) and "sem_seg"."""

    @classmethod
    def model_tasks(cls, cfg):
        tasks = super().model_tasks(cfg)
        _require(SEM_SEG_HEADS_REGISTRY, "MODEL.SEM_SEG_HEAD.NAME", cfg, STASemSegFPNHead)
        return tasks + ["sem_seg"]
