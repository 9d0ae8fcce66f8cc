"""Allocation-aware R-CNN components: tasks "det", "mask" and "sem_seg"."""
from .meta_arch import LOSS_TASKS, STAGeneralizedRCNN, STAPanopticFPN
from .roi_heads import STAROIHeads
from .rpn import STARPN
from .semantic_seg import STASemSegFPNHead
