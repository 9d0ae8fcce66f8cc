from contextlib import contextmanager
from typing import List

import torch
from detectron2.modeling import ROI_HEADS_REGISTRY, StandardROIHeads
from detectron2.structures import Instances

from .losses import loss_task
from .sampling import current_streams


def _sampled_for(task: str) -> str:
    """Field of a sampled proposal: whether it was sampled for ``task``'s head."""
    return f"sampled_for_{task}"


class AllocatedROIHeads:
    """Mixin for a detectron2 ROIHeads: proposals are sampled once per random stream
    (:class:`TaskStreams`), i.e. for the images allocated each sampling task ("det", "mask",
    "keypoint"; tasks allocated the same images share a stream), each as stock sampling on that
    sub-batch draws them, and marked with the tasks they were sampled for (:meth:`_restrict`)."""

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

    @staticmethod
    def _restrict(proposals: List[Instances], task: str) -> List[Instances]:
        """The proposals sampled for ``task``; untagged ones were sampled for every task."""
        return [x[x.get(_sampled_for(task))] if x.has(_sampled_for(task)) else x for x in proposals]


class AllocatedStandardROIHeads(AllocatedROIHeads):
    """Mixin for detectron2's StandardROIHeads or a subclass (e.g. CascadeROIHeads): the box head
    (every cascade stage) sees only the proposals sampled for "det", the mask head only the
    (foreground) ones sampled for "mask", the keypoint head those sampled for "keypoint": an image
    adds neither loss nor compute to the head of a task it is not allocated. A head with no
    allocated image returns detectron2's own exact, graph-connected zero loss."""

    def _forward_box(self, features, proposals, *args):
        if self.training:
            proposals = self._restrict(proposals, "det")
        return super()._forward_box(features, proposals, *args)

    def _forward_mask(self, features, instances):
        if self.training and self.mask_on:
            instances = self._restrict(instances, "mask")
        return super()._forward_mask(features, instances)

    def _forward_keypoint(self, features, instances):
        if self.training and self.keypoint_on:
            instances = self._restrict(instances, "keypoint")
        return super()._forward_keypoint(features, instances)


class AllocatedRes5ROIHeads(AllocatedROIHeads):
    """Mixin for detectron2's Res5ROIHeads (C4 models), whose box and mask heads share one res5
    computation: when "det" and "mask" are allocated different images, detectron2's forward runs
    once per task on the proposals sampled for it (the mask head only in the "mask" run), and each
    run's losses of its task are kept."""

    _given = None  # sampled proposals the current run uses instead of sampling

    def forward(self, images, features, proposals, targets=None):
        streams = current_streams()
        if not self.training or streams is None or streams.stock:
            return super().forward(images, features, proposals, targets)
        sampled = self.label_and_sample_proposals(proposals, targets)
        if all(tasks == streams.tasks for tasks in streams.groups.values()):  # one sample for every task
            with self._run_on(sampled, self.mask_on):
                return super().forward(images, features, proposals, targets)
        losses = {}
        for task in ("det", "mask"):
            with self._run_on(self._restrict(sampled, task), mask_on=task == "mask"):
                _, run_losses = super().forward(images, features, proposals, targets)
            losses.update((k, v) for k, v in run_losses.items() if loss_task(k) == task)
        return [], losses

    def label_and_sample_proposals(self, proposals, targets):
        return super().label_and_sample_proposals(proposals, targets) if self._given is None else self._given

    @contextmanager
    def _run_on(self, sampled: List[Instances], mask_on: bool):
        """Within: detectron2's forward uses ``sampled`` as its sampled proposals and runs the mask
        head iff ``mask_on``."""
        was_mask_on = self.mask_on
        self._given, self.mask_on = sampled, mask_on
        try:
            yield
        finally:
            self._given, self.mask_on = None, was_mask_on


@ROI_HEADS_REGISTRY.register()
class STAROIHeads(AllocatedStandardROIHeads, StandardROIHeads):
    """detectron2's StandardROIHeads with per-image task allocation
    (:class:`AllocatedStandardROIHeads`)."""
