"""Shared fixtures: tiny R-CNN configs and synthetic batches that run in a second on a CPU."""
import os
import shutil
import uuid

import pytest
import torch
import torch.nn.functional as F
from detectron2 import model_zoo
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.config import get_cfg
from detectron2.data.datasets import register_coco_instances
from detectron2.structures import BitMasks, Boxes, Instances

from sta_d2 import add_sta_config
from sta_d2.data.datasets import register_nyuv2_13
from sta_d2.data.synthetic import generate_cityscapes, generate_coco_shapes, generate_nyuv2_13

# The processes the tests start (training runs, the docs' commands) use one thread each, as the
# tests do (:func:`_one_thread`): two test workers share two cores (Makefile), and more threads
# would only contend.
os.environ.setdefault("OMP_NUM_THREADS", "1")

IMAGE_SIZE = (64, 96)
NUM_TRAIN, NUM_VAL = 6, 3  # images of the generated shapes dataset of `coco_root`


def tiny_rcnn_cfg(panoptic=False, stock=False):
    """A small Mask R-CNN (or Panoptic FPN) config; ``stock`` uses detectron2's own components."""
    cfg = get_cfg()
    add_sta_config(cfg)
    name = (
        "COCO-PanopticSegmentation/panoptic_fpn_R_50_1x.yaml"
        if panoptic
        else "COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_1x.yaml"
    )
    cfg.merge_from_file(model_zoo.get_config_file(name))
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.WEIGHTS = ""
    cfg.MODEL.RESNETS.DEPTH = 18
    cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = 64
    cfg.MODEL.FPN.OUT_CHANNELS = 32
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = 3
    cfg.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE = 32
    cfg.MODEL.RPN.BATCH_SIZE_PER_IMAGE = 64
    cfg.MODEL.RPN.POST_NMS_TOPK_TRAIN = 50
    cfg.MODEL.ROI_BOX_HEAD.FC_DIM = 64
    cfg.MODEL.ROI_MASK_HEAD.CONV_DIM = 16
    cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES = 4
    cfg.MODEL.SEM_SEG_HEAD.CONVS_DIM = 32
    cfg.INPUT.MIN_SIZE_TRAIN = (IMAGE_SIZE[0],)
    cfg.INPUT.MAX_SIZE_TRAIN = IMAGE_SIZE[1]
    cfg.INPUT.MIN_SIZE_TEST = IMAGE_SIZE[0]
    cfg.INPUT.MAX_SIZE_TEST = IMAGE_SIZE[1]
    if stock:
        cfg.MODEL.META_ARCHITECTURE = "PanopticFPN" if panoptic else "GeneralizedRCNN"
    else:
        cfg.MODEL.META_ARCHITECTURE = "STAPanopticFPN" if panoptic else "STAGeneralizedRCNN"
        cfg.MODEL.PROPOSAL_GENERATOR.NAME = "STARPN"
        cfg.MODEL.ROI_HEADS.NAME = "STAROIHeads"
        cfg.MODEL.SEM_SEG_HEAD.NAME = "STASemSegFPNHead"
    return cfg


def short_run(cfg, out_dir, policy, max_iter, checkpoint_period=100000, seed=7):
    """Set ``cfg`` up for a few in-process training steps on the CPU: 2 images per batch, no
    workers, no LR schedule, no evaluation."""
    cfg.DATALOADER.NUM_WORKERS = 0
    cfg.SOLVER.IMS_PER_BATCH = 2
    cfg.SOLVER.MAX_ITER = max_iter
    cfg.SOLVER.STEPS = ()
    cfg.SOLVER.WARMUP_ITERS = 0
    cfg.SOLVER.CHECKPOINT_PERIOD = checkpoint_period
    cfg.DATASETS.TEST = ()
    cfg.TEST.EVAL_PERIOD = 0
    cfg.SEED = seed
    cfg.STA.POLICY = policy
    cfg.OUTPUT_DIR = str(out_dir)
    return cfg


DENSE_SIZE = (32, 48)


def dense_cfg(backbone="resnet", tasks=("sem_seg", "depth", "normal")):
    cfg = get_cfg()
    add_sta_config(cfg)
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.META_ARCHITECTURE = "DenseMultiTaskNet"
    cfg.MODEL.DENSE.TASKS = list(tasks)
    cfg.MODEL.DENSE.NUM_CLASSES = 5
    cfg.MODEL.PIXEL_MEAN, cfg.MODEL.PIXEL_STD = [120.0, 115.0, 100.0], [60.0, 60.0, 60.0]
    if backbone == "resnet":
        cfg.MODEL.BACKBONE.NAME = "build_dilated_resnet_backbone"
        cfg.MODEL.RESNETS.DEPTH = 18
        cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = 64
        cfg.MODEL.RESNETS.OUT_FEATURES = ["res5"]
        cfg.MODEL.DENSE.HEAD_CHANNELS = 32
        cfg.MODEL.DENSE.ASPP_DILATIONS = [2, 4, 6]
    else:
        cfg.MODEL.BACKBONE.NAME = "build_segnet_backbone"
        cfg.MODEL.SEGNET.WIDTHS, cfg.MODEL.SEGNET.NUM_CONVS, cfg.MODEL.SEGNET.NORM = [8, 16], [1, 1], ""
        cfg.MODEL.DENSE.IN_FEATURE = "segnet"
        cfg.MODEL.DENSE.HEAD_NAME = "SegNetHead"
    return cfg


def dense_batch(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    h, w = DENSE_SIZE
    batch = []
    for _ in range(n):
        sem_seg = torch.randint(0, 5, (h, w), generator=g)
        sem_seg[:4] = 255
        depth = torch.rand(1, h, w, generator=g) * 5
        depth[:, :, :6] = 0
        normal = F.normalize(torch.randn(3, h, w, generator=g), dim=0)
        normal[:, -3:] = 0
        batch.append({"image": torch.rand(3, h, w, generator=g) * 255, "sem_seg": sem_seg,
                      "depth": depth, "normal": normal, "height": h, "width": w})
    return batch


def make_batch(num_images, seed=0, num_classes=3, num_sem_classes=4):
    """Model inputs as detectron2's DatasetMapper produces them: image, instances, sem_seg."""
    return make_sized_batch([IMAGE_SIZE] * num_images, seed, num_classes, num_sem_classes)


def make_sized_batch(sizes, seed=0, num_classes=3, num_sem_classes=4):
    """:func:`make_batch` with one image of each (height, width) of ``sizes`` (sides over 24 px)."""
    g = torch.Generator().manual_seed(seed)
    batch = []
    for i, (h, w) in enumerate(sizes):
        image = torch.randint(0, 256, (3, h, w), generator=g, dtype=torch.uint8)
        n = 1 + i % 3
        xy = torch.rand(n, 2, generator=g) * torch.tensor([w - 24.0, h - 24.0])
        wh = 12 + torch.rand(n, 2, generator=g) * 12
        boxes = torch.cat([xy, xy + wh], dim=1)
        masks = torch.zeros(n, h, w, dtype=torch.bool)
        for k, (x0, y0, x1, y1) in enumerate(boxes.round().long().tolist()):
            masks[k, y0:y1, x0:x1] = True
            image[:, y0:y1, x0:x1] = 40 + 60 * k
        inst = Instances((h, w))
        inst.gt_boxes = Boxes(boxes)
        inst.gt_classes = torch.randint(0, num_classes, (n,), generator=g)
        inst.gt_masks = BitMasks(masks)
        sem_seg = torch.randint(0, num_sem_classes, (h, w), generator=g)
        sem_seg[: h // 8] = 255
        batch.append({"image": image, "instances": inst, "sem_seg": sem_seg, "height": h, "width": w})
    return batch


@pytest.fixture(autouse=True)
def _one_thread():
    """One torch thread per test: the tiny models here gain nothing from more, and on a 2-core
    machine extra threads only contend (the fast loop takes less than half the time)."""
    torch.set_num_threads(1)


@pytest.fixture
def reregister():
    """``reregister(root, names, *register_all)``: drop the named datasets, register them again
    with ``register_all(root)`` functions; the original registrations come back afterwards."""
    saved = {}

    def register(root, names, *register_all):
        for n in names:
            saved.setdefault(n, (DatasetCatalog[n], MetadataCatalog.get(n).as_dict()))
            DatasetCatalog.remove(n)
            MetadataCatalog.remove(n)
        for register_at in register_all:
            register_at(root)

    yield register
    for n, (func, meta) in saved.items():
        DatasetCatalog.pop(n, None)
        MetadataCatalog.pop(n, None)
        DatasetCatalog.register(n, func)
        MetadataCatalog.get(n).set(**{k: v for k, v in meta.items() if k != "name"})


@pytest.fixture(scope="module")
def coco_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("data") / "shapes")
    generate_coco_shapes(root, NUM_TRAIN, NUM_VAL, image_size=(96, 128), seed=3)
    return root


@pytest.fixture(scope="module")
def cityscapes_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("data") / "cityscapes")
    generate_cityscapes(root, 4, 2, seed=5)
    return root


@pytest.fixture
def new_name():
    """Makes unique dataset names; removes them from detectron2's catalogs afterwards."""
    names = []

    def make(prefix="sta_d2_test"):
        names.append(f"{prefix}_{uuid.uuid4().hex[:8]}")
        return names[-1]

    yield make
    for name in names:
        DatasetCatalog.pop(name, None)
        MetadataCatalog.pop(name, None)


@pytest.fixture(scope="module")
def nyuv2(tmp_path_factory):
    """A registered 4-image NYUv2-13 (mtan layout) training set of 32x48 rooms; yields its name."""
    root = tmp_path_factory.mktemp("nyuv2")
    generate_nyuv2_13(str(root), num_train=4, num_val=0, image_size=(32, 48), seed=1)
    name = f"sta_test_nyuv2_{uuid.uuid4().hex[:8]}"
    register_nyuv2_13(name, str(root / "train"))
    yield name
    DatasetCatalog.remove(name)
    MetadataCatalog.remove(name)


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    """A registered 4-image shapes (COCO layout) training set of IMAGE_SIZE; yields its name."""
    root = tmp_path_factory.mktemp("shapes")
    generate_coco_shapes(str(root), num_train=4, num_val=0, image_size=IMAGE_SIZE, seed=2)
    name = f"sta_test_shapes_{uuid.uuid4().hex[:8]}"
    register_coco_instances(name, {}, str(root / "annotations/instances_train2017.json"), str(root / "train2017"))
    yield name
    DatasetCatalog.remove(name)
    MetadataCatalog.remove(name)


@pytest.fixture
def copy_of(data_root, tmp_path):
    """``copy_of(name)``: a writable copy of ``data_root / name``; ``data_root`` is the requesting
    test module's fixture of generated layouts."""
    def copy(name):
        shutil.copytree(data_root / name, tmp_path / name)
        return tmp_path / name
    return copy
