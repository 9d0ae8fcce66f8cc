"""Dense multi-task models: a shared backbone and one head per task of ``sta_d2.dense_tasks``."""
from .heads import DENSE_HEAD_REGISTRY, ASPPHead, SegNetHead
from .meta_arch import DenseMultiTaskNet
