from typing import List

import torch
from detectron2.modeling import ROI_HEADS_REGISTRY, StandardROIHeads
from detectron2.structures import Instances

from .sampling import current_streams


def _sampled_for(task: str) -> str:
    """Field of a sampled proposal: whether it was sampled for ``task``'s head."""
    return f"sampled_for_{task}"


@ROI_HEADS_REGISTRY.register()
class STAROIHeads(StandardROIHeads):
    """detectron2's StandardROIHeads with per-image task allocation.

    Proposals are sampled once per random stream (:class:`TaskStreams`), i.e. for the images
    allocated "det" and, separately unless they are the same images, for those allocated "mask",
    each as stock sampling on that sub-batch draws them. The box head sees only the proposals
    sampled for "det", the mask head only the (foreground) ones sampled for "mask": an image adds
    neither loss nor compute to the head of a task it is not allocated. A head with no allocated
    image returns detectron2's own exact, graph-connected zero loss.
    """

    def label_and_sample_proposals(self, proposals: List[Instances], targets: List[Instances]):
        """Per image, the proposals each stream containing it sampled, concatenated; unless a stream
        serves every task, its proposals are marked with the tasks they were sampled for."""
        streams = current_streams()
        if streams is None or streams.stock:
            return super().label_and_sample_proposals(proposals, targets)
        sample = super().label_and_sample_proposals
        per_image = [[] for _ in proposals]
        for tasks, images, sampled in streams.sample(
            lambda images: sample([proposals[i] for i in images], [targets[i] for i in images])
        ):
            for i, x in zip(images, sampled):
                if tasks != streams.tasks:
                    for task in streams.tasks:
                        marks = torch.full((len(x),), task in tasks, device=x.gt_classes.device)
                        x.set(_sampled_for(task), marks)
                per_image[i].append(x)
        return [Instances.cat(x) if x else self._unsampled(p) for x, p in zip(per_image, proposals)]

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
    def _restrict(proposals: List[Instances], task: str) -> List[Instances]:
        """The proposals sampled for ``task``; untagged ones were sampled for every task."""
        return [x[x.get(_sampled_for(task))] if x.has(_sampled_for(task)) else x for x in proposals]
