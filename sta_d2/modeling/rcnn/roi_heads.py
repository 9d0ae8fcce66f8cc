from typing import List

import torch
from detectron2.modeling import ROI_HEADS_REGISTRY, StandardROIHeads
from detectron2.structures import Instances

from ..allocation_scope import allocated_images


@ROI_HEADS_REGISTRY.register()
class STAROIHeads(StandardROIHeads):
    """detectron2's StandardROIHeads with per-image task allocation.

    Proposals are sampled only for images allocated "det" or "mask" (in batch order, as stock
    sampling on that sub-batch would draw them). The box head sees no proposal of an image not
    allocated "det", the mask head none of an image not allocated "mask": those images add
    neither loss nor compute to that head. A head with no allocated image returns detectron2's
    own exact, graph-connected zero loss.
    """

    def label_and_sample_proposals(self, proposals: List[Instances], targets: List[Instances]):
        det = allocated_images("det")
        mask = allocated_images("mask") if self.mask_on else []
        if det is None or mask is None:
            return super().label_and_sample_proposals(proposals, targets)
        needed = sorted(set(det) | set(mask))
        sampled = dict(
            zip(
                needed,
                super().label_and_sample_proposals(
                    [proposals[i] for i in needed], [targets[i] for i in needed]
                )
                if needed
                else [],
            )
        )
        return [sampled[i] if i in sampled else self._unsampled(p) for i, p in enumerate(proposals)]

    def _unsampled(self, proposals: Instances) -> Instances:
        """No proposal of this image, with the fields that sampled proposals carry."""
        empty = proposals[:0]
        empty.gt_classes = torch.empty(0, dtype=torch.int64, device=proposals.proposal_boxes.device)
        return empty

    def _forward_box(self, features, proposals):
        if self.training:
            proposals = self._restrict(proposals, "det")
        return super()._forward_box(features, proposals)

    def _forward_mask(self, features, instances):
        if self.training and self.mask_on:
            instances = self._restrict(instances, "mask")
        return super()._forward_mask(features, instances)

    @staticmethod
    def _restrict(instances: List[Instances], task: str) -> List[Instances]:
        images = allocated_images(task)
        if images is None:
            return instances
        return [x if i in images else x[:0] for i, x in enumerate(instances)]
