"""COCO files as annotation tools write them (ids from 0, a "background" category, RLE and
polygon masks, no area or iscrowd) load, train and evaluate right, also from the command line."""
import importlib.util
import json
import re

import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch
from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BitMasks, Boxes, BoxMode, Instances
from PIL import Image

from conftest import tiny_rcnn_cfg
from sta_d2.data import CheckedDatasetMapper, training_dataset_dicts
from sta_d2.data.datasets import register_coco_instances_checked
from sta_d2.evaluation import build_evaluator
from test_hostile_data import log_messages  # noqa: F401  (fixture)
from test_train_net import REPO, TINY, train_net

HEIGHT, WIDTH = 48, 64
CATEGORIES = [{"id": 0, "name": "background"}, {"id": 1, "name": "square"},
              {"id": 2, "name": "disc"}]


def write_coco(root, num_images=4, without=()):
    """A COCO file (``root/annotations.json``) and its PNG images (``root/images``), numbered as
    annotation tools do: image, annotation and category ids from 0; category 0 "background" has
    no annotation. Each image holds a square (polygon) and a disc (RLE); the keys ``without``
    are left out of every annotation."""
    (root / "images").mkdir(parents=True)
    images, annotations = [], []
    rows, cols = np.mgrid[:HEIGHT, :WIDTH]
    for i in range(num_images):
        x, y = 4 + 6 * i, 6 + 3 * i
        disc = ((rows - 30) ** 2 + (cols - 44 + 2 * i) ** 2 <= 64).astype(np.uint8)
        pixels = np.full((HEIGHT, WIDTH, 3), 30, np.uint8)
        pixels[y:y + 16, x:x + 18] = (220, 60, 60)
        pixels[disc.astype(bool)] = (60, 220, 60)
        Image.fromarray(pixels).save(root / "images" / f"{i}.png")
        images.append({"id": i, "file_name": f"{i}.png", "height": HEIGHT, "width": WIDTH})
        rle = mask_util.encode(np.asfortranarray(disc))
        rle["counts"] = rle["counts"].decode()
        square = [x, y, x + 18, y, x + 18, y + 16, x, y + 16]
        for category, segmentation, bbox, area in (
            (1, [square], [x, y, 18, 16], 18 * 16),
            (2, rle, mask_util.toBbox(rle).tolist(), int(mask_util.area(rle))),
        ):
            annotation = {"id": len(annotations), "image_id": i, "category_id": category,
                          "segmentation": segmentation, "bbox": bbox, "area": area, "iscrowd": 0}
            annotations.append({k: v for k, v in annotation.items() if k not in without})
    json_file = root / "annotations.json"
    json_file.write_text(json.dumps(
        {"images": images, "annotations": annotations, "categories": CATEGORIES}))
    return str(json_file), str(root / "images")


def as_predictions(record):
    """The ground truth of a dataset dict as a model's output, masks as pycocotools draws them."""
    h, w, annos = record["height"], record["width"], record["annotations"]
    predictions = Instances((h, w))
    boxes = [BoxMode.convert(a["bbox"], a["bbox_mode"], BoxMode.XYXY_ABS) for a in annos]
    predictions.pred_boxes = Boxes(torch.tensor(boxes))
    predictions.scores = torch.ones(len(annos))
    predictions.pred_classes = torch.tensor([a["category_id"] for a in annos])
    rles = [mask_util.merge(mask_util.frPyObjects(a["segmentation"], h, w))
            if isinstance(a["segmentation"], list) else a["segmentation"] for a in annos]
    predictions.pred_masks = torch.as_tensor(np.stack([mask_util.decode(r) for r in rles])).bool()
    return {"instances": predictions}


@pytest.mark.parametrize("without", [(), ("area", "iscrowd")])
def test_ground_truth_with_annotation_id_0_scores_ap_100(
        tmp_path, new_name, log_messages, without):  # noqa: F811
    json_file, image_root = write_coco(tmp_path / "coco", without=without)
    name = new_name()
    register_coco_instances_checked(name, json_file, image_root)
    records = DatasetCatalog.get(name)
    cfg = get_cfg()
    cfg.OUTPUT_DIR = str(tmp_path / "output")
    logged = log_messages("sta_d2.evaluation.coco")
    evaluator = build_evaluator(cfg, name)
    assert any(m.startswith(f"{json_file}: an annotation has id 0") and "renumbered 1..8" in m
               for m in logged)
    if without:
        assert "8 annotation(s) without iscrowd, evaluated as 0" in logged[-1]
        assert "8 annotation(s) without area" in logged[-1]
    evaluator.reset()
    for record in records:
        evaluator.process([record], [as_predictions(record)])
    results = evaluator.evaluate()
    assert results["bbox"]["AP"] == pytest.approx(100.0)
    assert results["segm"]["AP"] == pytest.approx(100.0)


def test_ids_from_0_and_a_background_category_load_as_detectron2_reads_them(
        tmp_path, new_name, log_messages):  # noqa: F811
    json_file, image_root = write_coco(tmp_path / "coco")
    name = new_name()
    register_coco_instances_checked(name, json_file, image_root)
    logged = log_messages("sta_d2.data.datasets.coco")
    records = DatasetCatalog.get(name)
    assert [r["image_id"] for r in records] == [0, 1, 2, 3]
    metadata = MetadataCatalog.get(name)
    assert metadata.thing_classes == ["background", "square", "disc"]
    assert metadata.thing_dataset_id_to_contiguous_id == {0: 0, 1: 1, 2: 2}
    assert (f"{json_file}: categories without annotations: 0 'background'; each category is a "
            "class of the model (R-CNN adds its own background class), so "
            "MODEL.ROI_HEADS.NUM_CLASSES counts all 3") in logged


def test_rle_masks_train_as_bitmasks_and_are_rejected_as_polygons(tmp_path, new_name):
    json_file, image_root = write_coco(tmp_path / "coco")
    name = new_name()
    register_coco_instances_checked(name, json_file, image_root)
    cfg = tiny_rcnn_cfg()
    cfg.DATASETS.TRAIN = (name,)
    records = training_dataset_dicts(cfg)
    assert cfg.INPUT.MASK_FORMAT == "polygon"
    # built after loading, as STATrainer builds it: the annotation file and ids are named
    with pytest.raises(ValueError, match=re.escape(
            f"dataset {name!r}: {json_file} has RLE masks (4 annotation(s), e.g. id 1 (image id "
            "0); id 3 (image id 1)") + r".*set INPUT.MASK_FORMAT bitmask"):
        CheckedDatasetMapper(cfg, is_train=True)
    # a mapper that knows nothing of the dataset names the image when it maps it
    cfg.DATASETS.TRAIN = ()
    with pytest.raises(ValueError, match=re.escape(records[0]["file_name"]) + r".*annotation\(s\) "
                                         r"\[1\] .*not polygons.*set INPUT.MASK_FORMAT bitmask"):
        CheckedDatasetMapper(cfg, is_train=True)(records[0])
    assert "instances" not in CheckedDatasetMapper(cfg, is_train=False)(records[0])

    cfg.DATASETS.TRAIN = (name,)
    cfg.INPUT.MASK_FORMAT = "bitmask"
    instances = CheckedDatasetMapper(cfg, is_train=True)(records[0])["instances"]
    assert isinstance(instances.gt_masks, BitMasks) and len(instances) == 2
    assert instances.gt_classes.tolist() == [1, 2]


def test_coco_dataset_flag_registers_checked_datasets_under_new_names(tmp_path, new_name):
    spec = importlib.util.spec_from_file_location("train_net", REPO / "tools/train_net.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    json_file, image_root = write_coco(tmp_path / "coco")
    name, missing = new_name(), new_name()
    args = tool.argument_parser().parse_args([
        "--config-file", "x.yaml", "--coco-dataset", name, json_file, image_root,
        "--coco-dataset", missing, str(tmp_path / "nothing.json"), image_root, "SEED", "3",
    ])
    assert args.opts == ["SEED", "3"]
    tool.register_coco_datasets(args.coco_dataset)
    assert MetadataCatalog.get(name).evaluator_type == "coco"
    assert len(DatasetCatalog.get(name)) == 4
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "nothing.json")) +
                       ".*check the paths given to --coco-dataset"):
        DatasetCatalog.get(missing)
    with pytest.raises(ValueError, match="--coco-dataset shapes_train: a dataset named "
                                         "'shapes_train' is already registered"):
        tool.register_coco_datasets([("shapes_train", json_file, image_root)])


@pytest.mark.slow
def test_train_net_trains_and_evaluates_a_coco_file_given_on_the_command_line(tmp_path):
    json_file, image_root = write_coco(tmp_path / "coco")
    out = tmp_path / "out"
    result = train_net(
        tmp_path, "--coco-dataset", "my_shapes", json_file, image_root, *TINY,
        "SOLVER.MAX_ITER", "2", "DATASETS.TRAIN", '("my_shapes",)',
        "DATASETS.TEST", '("my_shapes",)', "MODEL.ROI_HEADS.NUM_CLASSES", "3",
        "INPUT.MASK_FORMAT", "bitmask", "OUTPUT_DIR", str(out),
    )
    assert result.returncode == 0, result.log[-3000:]
    assert "copypaste: Task: bbox" in result.log and "copypaste: Task: segm" in result.log
    assert f"{json_file}: an annotation has id 0" in result.log  # renumbered for evaluation
