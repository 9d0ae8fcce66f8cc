from .allocation_scope import allocated_images, allocation_scope
from .zero_loss import connected_zero
from .rcnn import (LOSS_TASKS, STAGeneralizedRCNN, STAPanopticFPN, STAROIHeads, STARPN, STASemSegFPNHead,
                   allocating_class, loss_task)
from .task_set import resolve_tasks
from .backbone import SegNet, build_dilated_resnet_backbone, build_segnet_backbone
from .dense import DENSE_HEAD_REGISTRY, ASPPHead, DenseMultiTaskNet, SegNetHead
from .multitask import MultiTaskModel
