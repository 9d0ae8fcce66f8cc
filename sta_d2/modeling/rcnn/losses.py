"""Which task each detectron2 R-CNN loss belongs to."""
import re

LOSS_TASKS = {
    "loss_rpn_cls": "det",
    "loss_rpn_loc": "det",
    "loss_cls": "det",
    "loss_box_reg": "det",
    "loss_mask": "mask",
    "loss_keypoint": "keypoint",
    "loss_sem_seg": "sem_seg",
}


def loss_task(name: str) -> str:
    """The task of the loss ``name``; a cascade stage's loss (``loss_cls_stage1``) is its stage's
    box loss."""
    base = re.sub(r"_stage\d+$", "", name)
    if base not in LOSS_TASKS:
        raise KeyError(f"loss {name!r} belongs to no sta_d2 task (known: {sorted(LOSS_TASKS)})")
    return LOSS_TASKS[base]
