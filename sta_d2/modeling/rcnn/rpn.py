from detectron2.modeling import PROPOSAL_GENERATOR_REGISTRY
from detectron2.modeling.proposal_generator import RPN

from ..allocation_scope import allocated_images, connected_zero


@PROPOSAL_GENERATOR_REGISTRY.register()
class STARPN(RPN):
    """detectron2's RPN whose losses cover only the images allocated the "det" task.

    Anchors are labelled and sampled for the allocated images only, in batch order, so the
    random draws and the losses (normalised by the number of allocated images) equal those of
    stock RPN on that sub-batch. Proposals are still produced for every image.
    """

    task = "det"

    def label_and_sample_anchors(self, anchors, gt_instances):
        images = allocated_images(self.task)
        if images is not None:
            gt_instances = [gt_instances[i] for i in images]
        return super().label_and_sample_anchors(anchors, gt_instances)

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
