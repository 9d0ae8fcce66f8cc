"""Allocation-aware R-CNN components: tasks "det", "mask", "keypoint" and "sem_seg"."""
from .losses import LOSS_TASKS, loss_task
from .meta_arch import STAGeneralizedRCNN, STAPanopticFPN
from .roi_heads import AllocatedRes5ROIHeads, AllocatedROIHeads, AllocatedStandardROIHeads, STAROIHeads
from .rpn import STARPN, AllocatedRPN
from .semantic_seg import STASemSegFPNHead, AllocatedSemSegHead
from .wrap import allocating, allocating_class
