"""build_evaluator on generated data: ground truth fed back as predictions scores perfectly."""
import os

import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch
from cityscapesscripts.helpers.labels import id2label
from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.evaluation import (
    COCOEvaluator,
    CityscapesInstanceEvaluator,
    DatasetEvaluators,
    SemSegEvaluator,
)
from detectron2.structures import Boxes, BoxMode, Instances
from PIL import Image

from sta_d2.data.datasets import register_cityscapes_inst_sem, register_coco_instances_checked
from sta_d2.evaluation import build_evaluator, has_compiled_ops
from test_data import cityscapes_dirs, gt_path


@pytest.fixture
def cfg(tmp_path):
    cfg = get_cfg()
    cfg.OUTPUT_DIR = str(tmp_path / "output")
    return cfg


def evaluate(evaluator, pairs):
    evaluator.reset()
    for inputs, outputs in pairs:
        evaluator.process([inputs], [outputs])
    return evaluator.evaluate()


def one_hot_sem_seg(train_ids, num_classes=19):
    """Logits whose argmax is the target (ignored pixels get class 0: they do not count)."""
    target = torch.as_tensor(np.where(train_ids == 255, 0, train_ids).astype("int64"))
    return torch.nn.functional.one_hot(target, num_classes).permute(2, 0, 1).float()


def test_compiled_ops_are_detected_from_the_module_loader():
    from detectron2 import _C

    assert has_compiled_ops() == (not _C.__file__.endswith(".py"))


def test_evaluator_types(cfg, cityscapes_root, coco_root, new_name):  # noqa: F811
    coco = new_name()
    register_coco_instances_checked(
        coco, os.path.join(coco_root, "annotations", "instances_val2017.json"),
        os.path.join(coco_root, "val2017"),
    )
    evaluator = build_evaluator(cfg, coco)
    assert isinstance(evaluator, COCOEvaluator)
    assert evaluator._use_fast_impl is has_compiled_ops()
    assert evaluator._output_dir == os.path.join(cfg.OUTPUT_DIR, "inference")

    both = new_name()
    register_cityscapes_inst_sem(both, *cityscapes_dirs(cityscapes_root, "val"))
    evaluator = build_evaluator(cfg, both, "elsewhere")
    assert isinstance(evaluator, DatasetEvaluators)
    instance, semantic = evaluator._evaluators
    assert isinstance(instance, CityscapesInstanceEvaluator)
    assert isinstance(semantic, SemSegEvaluator) and semantic._output_dir == "elsewhere"

    instances_only = new_name()
    MetadataCatalog.get(instances_only).set(evaluator_type="cityscapes_instance")
    assert isinstance(build_evaluator(cfg, instances_only), CityscapesInstanceEvaluator)

    odd = new_name()
    MetadataCatalog.get(odd).evaluator_type = "lvis"
    with pytest.raises(NotImplementedError, match=f"{odd}.*'lvis'"):
        build_evaluator(cfg, odd)


def test_coco_ground_truth_scores_ap_100(cfg, coco_root, new_name):  # noqa: F811
    name = new_name()
    register_coco_instances_checked(
        name, os.path.join(coco_root, "annotations", "instances_val2017.json"),
        os.path.join(coco_root, "val2017"),
    )
    pairs = []
    for record in DatasetCatalog.get(name):
        h, w, annos = record["height"], record["width"], record["annotations"]
        predictions = Instances((h, w))
        boxes = [BoxMode.convert(a["bbox"], a["bbox_mode"], BoxMode.XYXY_ABS) for a in annos]
        predictions.pred_boxes = Boxes(torch.tensor(boxes))
        predictions.scores = torch.ones(len(annos))
        predictions.pred_classes = torch.tensor([a["category_id"] for a in annos])
        masks = [mask_util.decode(mask_util.merge(mask_util.frPyObjects(a["segmentation"], h, w)))
                 for a in annos]
        predictions.pred_masks = torch.as_tensor(np.stack(masks)).bool()
        pairs.append((record, {"instances": predictions}))
    results = evaluate(build_evaluator(cfg, name), pairs)
    assert results["bbox"]["AP"] == pytest.approx(100.0, abs=0.5)
    assert results["segm"]["AP"] == pytest.approx(100.0, abs=0.5)
    assert os.path.isfile(os.path.join(cfg.OUTPUT_DIR, "inference", "coco_instances_results.json"))


def test_cityscapes_inst_sem_ground_truth_scores_100_on_cpu(
    cfg, cityscapes_root, new_name, tmp_path, monkeypatch  # noqa: F811
):
    # cityscapesscripts' instance evaluation writes "matches.json" into the working directory
    monkeypatch.chdir(tmp_path)
    name = new_name()
    register_cityscapes_inst_sem(name, *cityscapes_dirs(cityscapes_root, "val"))
    thing_classes = MetadataCatalog.get(name).thing_classes
    pairs = []
    for record in DatasetCatalog.get(name):
        instance_ids = np.asarray(Image.open(gt_path(record["file_name"], "instanceIds.png")))
        ids = [v for v in np.unique(instance_ids) if v >= 1000]
        predictions = Instances(instance_ids.shape)
        predictions.pred_masks = torch.as_tensor(np.stack([instance_ids == v for v in ids]))
        predictions.pred_classes = torch.tensor(
            [thing_classes.index(id2label[v // 1000].name) for v in ids]
        )
        predictions.scores = torch.ones(len(ids))
        sem_seg = one_hot_sem_seg(np.asarray(Image.open(record["sem_seg_file_name"])))
        pairs.append((record, {"instances": predictions, "sem_seg": sem_seg}))
    results = evaluate(build_evaluator(cfg, name), pairs)
    assert results["segm"]["AP"] == pytest.approx(100.0) and results["segm"]["AP50"] == 100.0
    assert results["sem_seg"]["mIoU"] == pytest.approx(100.0)
    assert results["sem_seg"]["IoU-car"] == pytest.approx(100.0)
    assert os.path.isfile(tmp_path / "matches.json")

    # and wrong predictions score lower: every instance called a truck, every pixel road
    for _, outputs in pairs:
        outputs["instances"].pred_classes[:] = thing_classes.index("truck")
        outputs["sem_seg"] = one_hot_sem_seg(np.zeros(outputs["sem_seg"].shape[1:], "uint8"))
    results = evaluate(build_evaluator(cfg, name), pairs)
    assert results["segm"]["AP"] < 50 and results["sem_seg"]["mIoU"] < 20


def test_sem_seg_evaluator_type(cfg, cityscapes_root, new_name):  # noqa: F811
    joined = new_name()
    register_cityscapes_inst_sem(joined, *cityscapes_dirs(cityscapes_root, "val"))
    name = new_name()
    DatasetCatalog.register(name, lambda: DatasetCatalog.get(joined))
    meta = MetadataCatalog.get(joined)
    MetadataCatalog.get(name).set(
        evaluator_type="sem_seg", stuff_classes=meta.stuff_classes, ignore_label=255
    )
    evaluator = build_evaluator(cfg, name)
    assert isinstance(evaluator, SemSegEvaluator)
    pairs = [
        (record, {"sem_seg": one_hot_sem_seg(np.asarray(Image.open(record["sem_seg_file_name"])))})
        for record in DatasetCatalog.get(name)
    ]
    results = evaluate(evaluator, pairs)
    assert results["sem_seg"]["mIoU"] == pytest.approx(100.0)
    assert results["sem_seg"]["pACC"] == pytest.approx(100.0)
    assert os.path.isfile(os.path.join(cfg.OUTPUT_DIR, "inference", "sem_seg_evaluation.pth"))
