from detectron2.modeling import PROPOSAL_GENERATOR_REGISTRY
from detectron2.modeling.proposal_generator import RPN

from ..allocation_scope import allocated_images
from ..zero_loss import connected_zero
from .sampling import current_streams


class AllocatedRPN:
    """Mixin for detectron2's RPN (or a subclass): its losses cover only the images allocated the
    "det" task.

    Anchors are labelled and sampled once per random stream (:class:`TaskStreams`): the stream
    of the "det" images gives the losses, normalised by the number of those images as stock RPN on
    that sub-batch does; the other streams' samples only advance their random state as far as
    stock's run on their sub-batch would before it samples proposals. Proposals are still produced
    for every image.
    """

    task = "det"

    def label_and_sample_anchors(self, anchors, gt_instances):
        streams = current_streams()
        if streams is None or streams.stock:
            return super().label_and_sample_anchors(anchors, gt_instances)
        sample = super().label_and_sample_anchors
        sampled = streams.sample(lambda images: sample(anchors, [gt_instances[i] for i in images]))
        return next((labels for tasks, _, labels in sampled if self.task in tasks), ([], []))

    def losses(self, anchors, pred_objectness_logits, gt_labels, pred_anchor_deltas, gt_boxes):
        images = allocated_images(self.task)
        if images is None:
            return super().losses(anchors, pred_objectness_logits, gt_labels, pred_anchor_deltas, gt_boxes)
        if not images:
            zero = connected_zero(pred_objectness_logits + pred_anchor_deltas)
            return {"loss_rpn_cls": zero, "loss_rpn_loc": zero}
        return super().losses(
            anchors,
            [x[images] for x in pred_objectness_logits],
            gt_labels,
            [x[images] for x in pred_anchor_deltas],
            gt_boxes,
        )


@PROPOSAL_GENERATOR_REGISTRY.register()
class STARPN(AllocatedRPN, RPN):
    """detectron2's RPN with per-image task allocation (:class:`AllocatedRPN`)."""
