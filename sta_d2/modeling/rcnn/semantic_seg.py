from detectron2.modeling import SEM_SEG_HEADS_REGISTRY
from detectron2.modeling.meta_arch.semantic_seg import SemSegFPNHead

from ..allocation_scope import allocated_images
from ..zero_loss import connected_zero


class AllocatedSemSegHead:
    """Mixin for detectron2's SemSegFPNHead (or a subclass): in training it runs only on the images
    allocated "sem_seg".

    The head and its loss see exactly the allocated sub-batch, so the loss is stock's on that
    sub-batch (no all-ignored image can turn the mean into NaN). With no allocated image the loss
    is an exact zero connected to every head parameter.
    """

    task = "sem_seg"

    def forward(self, features, targets=None):
        images = allocated_images(self.task) if self.training else None
        if images is None:
            return super().forward(features, targets)
        if not images:
            return None, {"loss_sem_seg": connected_zero(self.parameters())}
        return super().forward({k: v[images] for k, v in features.items()}, targets[images])


@SEM_SEG_HEADS_REGISTRY.register()
class STASemSegFPNHead(AllocatedSemSegHead, SemSegFPNHead):
    """detectron2's SemSegFPNHead with per-image task allocation (:class:`AllocatedSemSegHead`)."""
