"""Dense multi-task models: tasks "sem_seg", "depth", "disparity" and "normal"."""
from .heads import DENSE_HEAD_REGISTRY, ASPPHead, SegNetHead
from .losses import cosine_loss, l1_loss, segmentation_loss
from .meta_arch import DENSE_TASKS, DenseMultiTaskNet
