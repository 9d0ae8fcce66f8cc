from .allocation_scope import allocated_images, allocation_scope, connected_zero
from .meta_arch import LOSS_TASKS, STAGeneralizedRCNN, STAPanopticFPN, resolve_tasks
from .roi_heads import STAROIHeads
from .rpn import STARPN
from .semantic_seg import STASemSegFPNHead
