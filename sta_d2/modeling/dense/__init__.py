"""Dense multi-task models: a shared backbone and one head per task of ``sta_d2.dense_tasks``."""
from ...dense_tasks import dense_task_names
from .heads import DENSE_HEAD_REGISTRY, ASPPHead, SegNetHead
from .meta_arch import DenseMultiTaskNet

# The built-in dense tasks, for code written before the task registry (see dense_task_names).
DENSE_TASKS = tuple(dense_task_names())
