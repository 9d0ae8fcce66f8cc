"""Allocation applied to the heads a config names: C4 (Res5ROIHeads), Cascade, keypoint R-CNN and a
user's StandardROIHeads subclass, each built from detectron2's own config with only the
meta-architecture and sta_d2's keys changed. Each task's losses equal (torch.equal) stock
detectron2's on the task's sub-batch, for every allocation of a batch of differently sized images;
each model trains with ista; heads sta_d2 cannot wrap fail naming their key."""
import pytest
import torch
from detectron2 import model_zoo
from detectron2.config import get_cfg
from detectron2.modeling import ROI_HEADS_REGISTRY, build_model
from detectron2.modeling.roi_heads import CascadeROIHeads, ROIHeads, StandardROIHeads
from detectron2.structures import Keypoints

from conftest import IMAGE_SIZE, make_sized_batch, short_run
from sta_d2 import STATrainer, add_sta_config, validate_sta_config
from sta_d2.modeling import STAROIHeads, allocating_class, loss_task
from sta_d2.specs import STAConfigError
from test_exactness import ALLOCATIONS, PADDED_SIDE, SIZES, batch_invariant_convolutions, run, with_tasks  # noqa: F401


@ROI_HEADS_REGISTRY.register()
class HalfBoxLossROIHeads(StandardROIHeads):
    """A user's ROI heads, defined outside sta_d2: StandardROIHeads with half the box losses."""

    def _forward_box(self, features, proposals):
        out = super()._forward_box(features, proposals)
        return {k: v / 2 for k, v in out.items()} if self.training else out


@ROI_HEADS_REGISTRY.register()
class BareROIHeads(ROIHeads):
    """ROI heads deriving from neither StandardROIHeads nor Res5ROIHeads."""


NUM_KEYPOINTS = 4
MODELS = {  # name -> (detectron2 model-zoo config, ROI_HEADS.NAME or None to keep the zoo's)
    "c4": ("COCO-InstanceSegmentation/mask_rcnn_R_50_C4_1x.yaml", None),
    "cascade": ("Misc/cascade_mask_rcnn_R_50_FPN_1x.yaml", None),
    "keypoint": ("COCO-Keypoints/keypoint_rcnn_R_50_FPN_1x.yaml", None),
    "subclass": ("COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_1x.yaml", "HalfBoxLossROIHeads"),
}


def tiny_cfg(model, stock=False):
    """Model ``model`` of MODELS at a tiny size; with sta_d2 only the meta-architecture differs."""
    zoo_config, roi_heads = MODELS[model]
    cfg = get_cfg()
    add_sta_config(cfg)
    cfg.merge_from_file(model_zoo.get_config_file(zoo_config))
    cfg.MODEL.DEVICE, cfg.MODEL.WEIGHTS = "cpu", ""
    cfg.MODEL.RESNETS.DEPTH, cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = 18, 64
    cfg.MODEL.RESNETS.WIDTH_PER_GROUP = 8  # C4's res5 head: 64 bottleneck channels
    cfg.MODEL.FPN.OUT_CHANNELS = 32
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = 3
    cfg.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE = 32
    cfg.MODEL.RPN.BATCH_SIZE_PER_IMAGE = 64
    cfg.MODEL.RPN.POST_NMS_TOPK_TRAIN = 50
    cfg.MODEL.ROI_BOX_HEAD.FC_DIM = 64
    cfg.MODEL.ROI_MASK_HEAD.CONV_DIM = 16
    cfg.MODEL.ROI_KEYPOINT_HEAD.NUM_KEYPOINTS = NUM_KEYPOINTS
    cfg.MODEL.ROI_KEYPOINT_HEAD.CONV_DIMS = (16, 16)
    cfg.INPUT.MIN_SIZE_TRAIN, cfg.INPUT.MAX_SIZE_TRAIN = (IMAGE_SIZE[0],), IMAGE_SIZE[1]
    cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST = IMAGE_SIZE[0], IMAGE_SIZE[1]
    if roi_heads:
        cfg.MODEL.ROI_HEADS.NAME = roi_heads
    if not stock:
        cfg.MODEL.META_ARCHITECTURE = "STAGeneralizedRCNN"
    return cfg


def with_keypoints(batch, seed=0):
    """``batch`` whose instances have NUM_KEYPOINTS visible keypoints each, inside their boxes."""
    g = torch.Generator().manual_seed(seed)
    for x in batch:
        inst = x["instances"]
        boxes = inst.gt_boxes.tensor
        corner, size = boxes[:, None, :2], (boxes[:, 2:] - boxes[:, :2])[:, None]
        xy = corner + torch.rand(len(inst), NUM_KEYPOINTS, 2, generator=g) * size
        inst.gt_keypoints = Keypoints(torch.cat([xy, torch.full_like(xy[..., :1], 2.0)], dim=-1))
    return batch


def build_pair(model):
    """The sta_d2 model and stock detectron2's, with identical weights, in training mode; stock
    pads any sub-batch of SIZES' images to the whole batch's PADDED_SIDE x PADDED_SIDE."""
    torch.manual_seed(0)
    ours = build_model(tiny_cfg(model))
    stock = build_model(tiny_cfg(model, stock=True))
    stock.load_state_dict(ours.state_dict())
    backbone = stock.backbone
    backbone.__class__ = type("Padded", (type(backbone),), {"size_divisibility": PADDED_SIDE})
    return ours.train(), stock.train()


def allocated(tasks, letters):
    """The tasks of an ALLOCATIONS entry: "d" is det, "m" the model's second task (mask or keypoint)."""
    return tuple(t for t in tasks if ("d" if t == "det" else "m") in letters)


def test_heads_the_config_names_are_wrapped():
    cfg = tiny_cfg("cascade")
    wrapped = allocating_class(cfg, "MODEL.ROI_HEADS.NAME")
    assert issubclass(wrapped, CascadeROIHeads) and wrapped.__name__ == "STACascadeROIHeads"
    assert ROI_HEADS_REGISTRY.get("STACascadeROIHeads") is wrapped
    model = build_model(cfg)
    assert type(model.roi_heads) is wrapped and model.tasks == ["det", "mask"]
    cfg.MODEL.ROI_HEADS.NAME = "StandardROIHeads"
    assert allocating_class(cfg, "MODEL.ROI_HEADS.NAME") is STAROIHeads
    cfg.MODEL.ROI_HEADS.NAME = "STAROIHeads"
    assert allocating_class(cfg, "MODEL.ROI_HEADS.NAME") is STAROIHeads


@pytest.mark.parametrize("model", [pytest.param("c4", marks=pytest.mark.slow), "cascade", "keypoint", "subclass"])
def test_each_task_loss_equals_stock_on_its_padded_sub_batch(model, batch_invariant_convolutions):
    """One sta_d2 forward per allocation; every task's losses (every cascade stage's) against
    stock's on that task's sub-batch, both from the same random state, with detectron2's sampling."""
    ours, stock = build_pair(model)
    batch = with_keypoints(make_sized_batch(SIZES, seed=7))
    assert ours.preprocess_image(batch).tensor.shape[-2:] == (PADDED_SIDE, PADDED_SIDE)
    stock_losses = {}
    for allocation in ALLOCATIONS:
        tasks = [allocated(ours.tasks, letters) for letters in allocation]
        ours_losses = run(ours, with_tasks(batch, tasks))
        assert ours_losses.keys() == run(stock, batch).keys()
        for task in ours.tasks:
            images = tuple(i for i, t in enumerate(tasks) if task in t)
            if not images:
                assert ours.task_losses(ours_losses)[task].item() == 0.0, (allocation, task)
                continue
            if images not in stock_losses:
                stock_losses[images] = run(stock, [batch[i] for i in images])
            task_keys = [k for k in stock_losses[images] if loss_task(k) == task]
            assert task_keys
            for k in task_keys:
                assert torch.equal(ours_losses[k], stock_losses[images][k]), (allocation, task, k)


def test_a_head_that_cannot_be_wrapped_fails_naming_its_key():
    cfg = tiny_cfg("subclass")
    cfg.MODEL.ROI_HEADS.NAME = "BareROIHeads"
    for check in (validate_sta_config, build_model):
        with pytest.raises(STAConfigError, match=r"MODEL\.ROI_HEADS\.NAME = 'BareROIHeads'"):
            check(cfg)


def test_keypoint_loss_normalised_by_batch_size_is_rejected():
    cfg = tiny_cfg("keypoint")
    cfg.MODEL.ROI_KEYPOINT_HEAD.NORMALIZE_LOSS_BY_VISIBLE_KEYPOINTS = False
    with pytest.raises(STAConfigError, match="NORMALIZE_LOSS_BY_VISIBLE_KEYPOINTS"):
        validate_sta_config(cfg)


@pytest.mark.parametrize("model", ["c4", "cascade", "subclass"])
def test_trains_with_ista(model, shapes, tmp_path):
    cfg = short_run(tiny_cfg(model), tmp_path, "ista", max_iter=2)
    cfg.DATASETS.TRAIN = (shapes,)
    validate_sta_config(cfg)
    trainer = STATrainer(cfg)
    before = [p.detach().clone() for p in trainer.model.parameters()]
    trainer.train()
    assert any(not torch.equal(x, y) for x, y in zip(before, trainer.model.parameters()))
