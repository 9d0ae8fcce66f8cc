"""A LazyConfig model with task allocation."""
from typing import List, Optional, Sequence

from detectron2.modeling import GeneralizedRCNN, PanopticFPN
from detectron2.utils.registry import locate

from ..modeling.rcnn import STAGeneralizedRCNN, STAPanopticFPN, allocating
from ..specs import fail

_META_ARCHS = {GeneralizedRCNN: STAGeneralizedRCNN, PanopticFPN: STAPanopticFPN}
# LazyConfig node of a part -> the yacs key of the same part, which selects its allocation mixin
_PARTS = {"proposal_generator": "MODEL.PROPOSAL_GENERATOR.NAME", "roi_heads": "MODEL.ROI_HEADS.NAME",
          "sem_seg_head": "MODEL.SEM_SEG_HEAD.NAME"}


def _target(node):
    return locate(node._target_) if isinstance(node._target_, str) else node._target_


def allocating_model(model, tasks: Optional[Sequence[str]] = None):
    """``model``, the LazyConfig node of a GeneralizedRCNN or PanopticFPN (e.g. the model zoo's
    ``common/models/mask_rcnn_fpn.py``), made in place sta_d2's meta-architecture whose proposal
    generator, ROI heads and semantic head are their classes with allocation applied
    (:func:`sta_d2.modeling.allocating`); returns it. ``tasks``: their order, by default the
    model's: "det", "mask" with a mask head, "keypoint" with a keypoint head, "sem_seg" for a
    PanopticFPN. Fails naming the node of a part that cannot apply allocations."""
    arch = _target(model)
    sta_arch = next((sta for stock, sta in _META_ARCHS.items() if arch in (stock, sta)), None)
    if sta_arch is None:
        fail("model._target_", arch, "sta_d2 applies task allocations to GeneralizedRCNN and PanopticFPN")
    for part, kind in _PARTS.items():
        if part in model and model[part] is not None:
            model[part]._target_ = allocating(_target(model[part]), kind, f"model.{part}._target_")
    model_tasks = _model_tasks(model, sta_arch)
    if tasks is not None and sorted(tasks) != sorted(model_tasks):
        fail("tasks", list(tasks), f"must be the model's tasks {model_tasks}, in any order")
    model._target_ = sta_arch
    model.tasks = list(tasks or model_tasks)
    return model


def _model_tasks(model, arch) -> List[str]:
    """The tasks of ``model``; fails, as the yacs model does, on a head that would train on images
    not allocated its task."""
    heads = model.roi_heads
    extra = [t for t, head in (("mask", "mask_head"), ("keypoint", "keypoint_head")) if heads.get(head) is not None]
    if extra and heads.get("train_on_pred_boxes", False):
        fail("model.roi_heads.train_on_pred_boxes", True, f"the {extra[0]} head would train on box "
             "predictions for images not allocated 'det'")
    if "keypoint" in extra and heads.keypoint_head.get("loss_normalizer", 1.0) != "visible":
        fail("model.roi_heads.keypoint_head.loss_normalizer", heads.keypoint_head.get("loss_normalizer", 1.0),
             "must be 'visible': detectron2 divides by the number of images the ROI heads get, the whole "
             "batch, not by the sub-batch's")
    return ["det"] + extra + (["sem_seg"] if arch is STAPanopticFPN else [])
