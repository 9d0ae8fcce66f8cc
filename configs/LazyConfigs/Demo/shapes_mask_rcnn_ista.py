# configs/Demo/shapes_mask_rcnn_ista.yaml as a LazyConfig: a small Mask R-CNN (ResNet-18 FPN with
# GroupNorm, trained from scratch) on the generated shapes dataset, on the CPU, with ISTA (2
# optimizer steps per batch, so 600 steps = 300 batches of 8), built on detectron2's model-zoo
# common/ configs.
import detectron2.data.transforms as T
from detectron2 import model_zoo
from detectron2.config import LazyCall as L
from detectron2.data import DatasetMapper, build_detection_test_loader, build_detection_train_loader
from detectron2.data import get_detection_dataset_dicts
from detectron2.layers import ShapeSpec
from detectron2.modeling.backbone import ResNet
from detectron2.solver import WarmupParamScheduler
from fvcore.common.param_scheduler import MultiStepParamScheduler

from sta_d2.lazy import allocating_model, evaluator

model = model_zoo.get_config("common/models/mask_rcnn_fpn.py").model
model.backbone.bottom_up.stem.norm = "GN"
model.backbone.bottom_up.stages = L(ResNet.make_default_stages)(depth=18, norm="GN")
model.backbone.norm = "GN"
model.backbone.out_channels = 64
model.proposal_generator.head.in_channels = 64
model.proposal_generator.anchor_generator.sizes = [[8], [16], [32], [64], [128]]
model.proposal_generator.post_nms_topk = (200, 100)
model.roi_heads.num_classes = 3
model.roi_heads.batch_size_per_image = 64
model.roi_heads.box_head.input_shape = ShapeSpec(channels=64, height=7, width=7)
model.roi_heads.box_head.fc_dims = [256, 256]
model.roi_heads.box_predictor.input_shape = ShapeSpec(channels=256)
model.roi_heads.mask_head.input_shape = ShapeSpec(channels=64, height=14, width=14)
model.roi_heads.mask_head.conv_dims = [64, 64, 64, 64, 64]
model.roi_heads.mask_head.conv_norm = "GN"
model.pixel_std = [57.375, 57.120, 58.395]
model = allocating_model(model)

_resize = L(T.ResizeShortestEdge)(short_edge_length=128, max_size=128)
dataloader = dict(
    train=L(build_detection_train_loader)(
        dataset=L(get_detection_dataset_dicts)(names="shapes_train", filter_empty=False),
        mapper=L(DatasetMapper)(is_train=True, augmentations=[_resize, L(T.RandomFlip)(horizontal=True)],
                                image_format="BGR", use_instance_mask=True),
        total_batch_size=8,
        num_workers=1,
    ),
    test=L(build_detection_test_loader)(
        dataset=L(get_detection_dataset_dicts)(names="shapes_val", filter_empty=False),
        mapper=L(DatasetMapper)(is_train=False, augmentations=[_resize], image_format="BGR"),
        num_workers=1,
    ),
    evaluator=L(evaluator)(dataset_name="${..test.dataset.names}", output_dir="${...train.output_dir}"),
)

optimizer = model_zoo.get_config("common/optim.py").SGD
optimizer.lr = 0.02

train = model_zoo.get_config("common/train.py").train
train.update(output_dir="output/lazy_shapes_mask_rcnn_ista", max_iter=600, eval_period=0, device="cpu", seed=1)
train.checkpointer.period = 100000

lr_multiplier = L(WarmupParamScheduler)(
    scheduler=L(MultiStepParamScheduler)(values=[1.0, 0.1, 0.01], milestones=[450, 550], num_updates=600),
    warmup_length=100 / 600,
    warmup_factor=0.001,
)

sta = dict(POLICY="ista", TASKS_PER_IMAGE=1)
