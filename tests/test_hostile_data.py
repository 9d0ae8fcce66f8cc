"""Hostile data: broken files and annotations, in the COCO-format R-CNN datasets and the
dense layouts, are rejected with the file named or handled as datasets/README.md ("Broken
inputs") documents. Each test generates tiny data in the real layout and then breaks it."""
import json
import logging
import re
import shutil
from pathlib import Path

import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch
from detectron2.data import DatasetCatalog, DatasetMapper
from detectron2.data.detection_utils import SizeMismatchError
from detectron2.modeling import build_model
from detectron2.utils.events import EventStorage
from PIL import Image

from conftest import NUM_TRAIN, tiny_rcnn_cfg
from sta_d2.data import CheckedDatasetMapper, DenseDatasetMapper, training_dataset_dicts
from sta_d2.data.datasets import (
    load_cityscapes_depth_seg,
    load_cityscapes_inst_sem,
    load_cityscapes_npy,
    load_nyud_mt,
    load_nyuv2_13,
    register_coco_instances_checked,
)
from sta_d2.data.synthetic import (
    generate_cityscapes,
    generate_cityscapes_npy,
    generate_nyud_mt,
    generate_nyuv2_13,
)
from sta_d2.engine import STATrainer

SIZE = (24, 32)  # generated NYUv2 images


@pytest.fixture
def log_messages():
    """``log_messages(name)``: the list that collects what logger ``name`` logs from now on
    (a handler on the logger itself, so it works whether or not the logger propagates)."""
    handlers = []

    def collect(name):
        messages = []
        handler = logging.Handler(logging.INFO)
        handler.emit = lambda record: messages.append(record.getMessage())
        logger = logging.getLogger(name)
        logger.addHandler(handler)
        handlers.append((logger, handler, logger.level))
        logger.setLevel(logging.INFO)
        return messages

    yield collect
    for logger, handler, level in handlers:
        logger.removeHandler(handler)
        logger.setLevel(level)


def truncate(path):
    """Cut a file in half, as an interrupted copy or download leaves it."""
    data = Path(path).read_bytes()
    Path(path).write_bytes(data[: len(data) // 2])


def garble(path):
    """Overwrite a file with bytes that are no image."""
    Path(path).write_bytes(b"\x89PNG but not really" + bytes(range(256)))


# ================================================================ COCO format (R-CNN models)


class ShapesCopy:
    """A writable copy of the generated shapes dataset at ``root``: edit ``coco`` (its train
    annotations), ``save()`` them, ``load()`` it (registered with the checked loader as
    ``name``)."""

    def __init__(self, source, root, new_name):
        shutil.copytree(source, root)
        self.root, self.new_name = root, new_name
        self.json_file = root / "annotations" / "instances_train2017.json"
        self.coco = json.loads(self.json_file.read_text())

    def save(self):
        self.json_file.write_text(json.dumps(self.coco))

    def load(self):
        self.name = self.new_name()
        image_dir = str(self.root / "train2017")
        register_coco_instances_checked(self.name, str(self.json_file), image_dir)
        return DatasetCatalog.get(self.name)


@pytest.fixture
def shapes(coco_root, tmp_path, new_name):
    return ShapesCopy(coco_root, tmp_path / "shapes", new_name)


def test_unknown_category_id_is_rejected_naming_file_and_annotation(shapes):
    anno = shapes.coco["annotations"][2]
    anno["category_id"] = 7
    shapes.save()
    with pytest.raises(ValueError, match=re.escape(str(shapes.json_file))) as error:
        shapes.load()
    assert f"id {anno['id']} (image id {anno['image_id']}): category_id 7" in str(error.value)
    assert "categories' ids [1, 2, 3]" in str(error.value)


@pytest.mark.parametrize("segmentation, shown", [
    ([[10.0, 10.0, 20.0, 20.0]], "polygons of [4] coordinates"),  # 2 points
    ([[10.0, 10.0, 20.0, 20.0, 30.0, 10.0, 5.0]], "polygons of [7] coordinates"),  # odd length
    ([[10.0, 10.0, 20.0, 20.0, 30.0, 10.0], [1.0, 2.0]], "polygons of [6, 2] coordinates"),
    ([[]], "polygons of [0] coordinates"),
    ([10.0, 10.0, 20.0, 20.0, 30.0, 10.0], "segmentation is not a list of polygons"),  # flat
])
def test_polygon_of_fewer_than_3_points_is_rejected_naming_the_annotation(shapes, segmentation,
                                                                           shown):
    anno = shapes.coco["annotations"][1]
    anno["segmentation"] = segmentation
    shapes.save()
    with pytest.raises(ValueError, match=re.escape(str(shapes.json_file))) as error:
        shapes.load()
    message = str(error.value)
    assert "1 annotation(s) with a polygon of fewer than 3 points" in message
    assert f"id {anno['id']} (image id {anno['image_id']}): {shown}" in message


def test_rle_of_another_size_than_its_image_is_rejected_naming_the_annotation(shapes):
    anno = shapes.coco["annotations"][1]
    image = next(i for i in shapes.coco["images"] if i["id"] == anno["image_id"])
    rle = mask_util.encode(np.ones((image["height"] // 2, image["width"]), np.uint8, order="F"))
    anno["segmentation"] = {"size": rle["size"], "counts": rle["counts"].decode()}
    shapes.save()
    with pytest.raises(ValueError, match=re.escape(str(shapes.json_file))) as error:
        shapes.load()
    assert (f"1 annotation(s) with an RLE whose size (height, width) is not its image's: id "
            f"{anno['id']} (image id {anno['image_id']}): RLE size {rle['size']}, image "
            f"{[image['height'], image['width']]}") in str(error.value)


def test_images_without_annotations_are_counted_then_filtered_or_kept(shapes, log_messages):
    empty_image = shapes.coco["images"][0]["id"]
    shapes.coco["annotations"] = [a for a in shapes.coco["annotations"]
                                  if a["image_id"] != empty_image]
    shapes.save()
    loaded = log_messages("sta_d2.data.datasets.coco")
    dicts = shapes.load()
    expected = f"{shapes.json_file}: 1 of {NUM_TRAIN} images have no annotation (background only)"
    assert expected in loaded
    assert [len(d["annotations"]) == 0 for d in dicts].count(True) == 1

    cfg = tiny_rcnn_cfg()
    cfg.DATASETS.TRAIN = (shapes.name,)
    removed = log_messages("detectron2.data.build")
    kept = training_dataset_dicts(cfg)  # FILTER_EMPTY_ANNOTATIONS is on by default
    assert len(kept) == NUM_TRAIN - 1 and all(d["image_id"] != empty_image for d in kept)
    assert f"Removed 1 images with no usable annotations. {NUM_TRAIN - 1} images left." in removed

    cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS = False
    dicts = training_dataset_dicts(cfg)
    assert len(dicts) == NUM_TRAIN
    background = next(d for d in dicts if d["image_id"] == empty_image)
    mapper = CheckedDatasetMapper(cfg, is_train=True)
    batch = [mapper(background), mapper(next(d for d in dicts if d["annotations"]))]
    assert len(batch[0]["instances"]) == 0 and len(batch[1]["instances"]) > 0
    torch.manual_seed(0)
    model = build_model(cfg).train()
    with EventStorage():
        losses = model(batch)
    assert all(torch.isfinite(v) for v in losses.values())


def test_annotation_without_segmentation_is_rejected_when_masks_are_trained(shapes):
    image_id = shapes.coco["annotations"][0]["image_id"]
    shapes.coco["annotations"][0]["segmentation"] = []  # detectron2's loader drops it
    shapes.save()
    record = next(d for d in shapes.load() if d["image_id"] == image_id)
    cfg = tiny_rcnn_cfg()
    with pytest.raises(ValueError, match=re.escape(record["file_name"]) + r".*annotation\(s\) "
                                         r"\[0\] .*no segmentation.*MODEL.MASK_ON"):
        CheckedDatasetMapper(cfg, is_train=True)(record)
    cfg.MODEL.MASK_ON = False
    assert len(CheckedDatasetMapper(cfg, is_train=True)(record)["instances"]) >= 1
    cfg.MODEL.MASK_ON = True
    assert "instances" not in CheckedDatasetMapper(cfg, is_train=False)(record)


@pytest.mark.parametrize("break_file", [truncate, garble])
@pytest.mark.parametrize("is_train", [True, False])
def test_unreadable_image_is_named(shapes, break_file, is_train):
    record = shapes.load()[1]
    break_file(record["file_name"])
    with pytest.raises(ValueError, match=re.escape(record["file_name"]) + ": not a readable "
                                                                          "image"):
        CheckedDatasetMapper(tiny_rcnn_cfg(), is_train=is_train)(record)


def test_stock_mapper_does_not_name_a_truncated_image(shapes):
    """Why CheckedDatasetMapper exists: PIL's error for a truncated file has no path."""
    record = shapes.load()[1]
    truncate(record["file_name"])
    with pytest.raises(OSError, match="truncated") as error:
        DatasetMapper(tiny_rcnn_cfg(), is_train=True)(record)
    assert record["file_name"] not in str(error.value)


def test_image_size_differing_from_the_annotation_file_is_named(shapes):
    shapes.coco["images"][1]["height"] += 8
    shapes.save()
    record = next(d for d in shapes.load() if d["image_id"] == shapes.coco["images"][1]["id"])
    with pytest.raises(SizeMismatchError, match=re.escape(record["file_name"])):
        CheckedDatasetMapper(tiny_rcnn_cfg(), is_train=True)(record)


def test_trainer_loaders_use_the_checked_mapper(shapes):
    shapes.load()
    for image in (shapes.root / "train2017").iterdir():
        truncate(image)
    cfg = tiny_rcnn_cfg()
    cfg.DATASETS.TRAIN = (shapes.name,)
    cfg.DATALOADER.NUM_WORKERS = 0
    unreadable = r"train2017.\d+\.jpg: not a readable image"
    with pytest.raises(ValueError, match=unreadable):
        next(iter(STATrainer.build_test_loader(cfg, shapes.name)))
    with pytest.raises(ValueError, match=unreadable):
        next(iter(STATrainer.build_train_loader(cfg, seed=0)))


# ---------------------------------------------------------------- Cityscapes instances


@pytest.fixture
def cityscapes_val(cityscapes_root, tmp_path):
    """(image dir, gt dir) of a writable copy of the generated Cityscapes val split."""
    root = tmp_path / "cityscapes"
    shutil.copytree(cityscapes_root, root)
    return root / "leftImg8bit" / "val", root / "gtFine" / "val"


@pytest.mark.parametrize("points", [2, 0])
def test_cityscapes_polygon_of_fewer_than_3_points_is_named(cityscapes_val, points):
    polygons = sorted(cityscapes_val[1].glob("*/*_polygons.json"))[0]
    annotation = json.loads(polygons.read_text())
    index = next(i for i, o in enumerate(annotation["objects"]) if o["label"] == "car")
    annotation["objects"][index]["polygon"] = annotation["objects"][index]["polygon"][:points]
    polygons.write_text(json.dumps(annotation))
    with pytest.raises(ValueError, match=re.escape(str(polygons)) + ": polygon.* fewer than 3 "
                                         rf"points: object {index} \('car'\): {points} points"):
        load_cityscapes_inst_sem(*map(str, cityscapes_val))


def test_cityscapes_broken_or_wrong_size_label_image_is_named(cityscapes_val):
    record = load_cityscapes_inst_sem(*map(str, cityscapes_val))[0]
    mapper = CheckedDatasetMapper(tiny_rcnn_cfg(), is_train=True)
    labels = np.asarray(Image.open(record["sem_seg_file_name"]))
    Image.fromarray(labels[:, : labels.shape[1] // 2]).save(record["sem_seg_file_name"])
    with pytest.raises(ValueError, match=re.escape(record["sem_seg_file_name"]) + ": semantic "
                                         r"labels of width x height \(128, 128\), but its image"):
        mapper(record)
    Image.fromarray(labels).save(record["sem_seg_file_name"])
    truncate(record["sem_seg_file_name"])
    with pytest.raises(ValueError, match=re.escape(record["sem_seg_file_name"]) + ": not a "
                                                                                  "readable"):
        mapper(record)


# ================================================================ dense layouts


@pytest.fixture(scope="module")
def dense_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("dense")
    generate_nyuv2_13(str(root / "nyuv2"), 1, 1, image_size=SIZE, seed=1)
    generate_nyud_mt(str(root / "NYUD_MT"), 1, 1, image_size=SIZE, seed=2)
    generate_cityscapes(str(root / "cityscapes"), 1, 1, image_size=(32, 64), seed=3)
    generate_cityscapes_npy(str(root / "cityscapes_npy"), 1, 1, image_size=(32, 64), seed=4)
    return root


@pytest.fixture
def dense_record(dense_root, tmp_path):
    """``dense_record(layout)``: the first val dataset dict of a writable copy of ``layout``."""
    loaders = {
        "nyuv2": lambda root: load_nyuv2_13(str(root / "val")),
        "NYUD_MT": lambda root: load_nyud_mt(str(root), "val"),
        "cityscapes": lambda root: load_cityscapes_depth_seg(str(root), "val"),
        "cityscapes_npy": lambda root: load_cityscapes_npy(str(root / "val")),
    }

    def record(layout):
        shutil.copytree(dense_root / layout, tmp_path / layout)
        return loaders[layout](tmp_path / layout)[0]
    return record


def map_dense(record):
    return DenseDatasetMapper(is_train=False)(record)


def _save_npy(array):
    return lambda path: np.save(path, array)


def _save_png(array):
    return lambda path: Image.fromarray(array).save(path, format="PNG")


@pytest.mark.parametrize("layout, key, corrupt, match", [
    ("NYUD_MT", "file_name", truncate, r"not a readable image \(OSError"),
    ("NYUD_MT", "file_name", garble, "not a readable image"),
    ("NYUD_MT", "sem_seg_file_name", truncate, "not a readable image"),
    ("cityscapes", "disparity_file_name", truncate, "not a readable image"),
    ("cityscapes", "sem_seg_file_name", garble, "not a readable image"),
    ("nyuv2", "depth_file_name", truncate, "not a readable .npy file"),
    ("nyuv2", "normal_file_name", garble, "not a readable .npy file"),
    # wrong shape or dtype
    ("nyuv2", "depth_file_name", _save_npy(np.ones(SIZE, np.uint16)), "depth of dtype uint16"),
    ("nyuv2", "depth_file_name", _save_npy(np.ones((1, *SIZE, 1), np.float32)),
     r"depth of dtype float32 and shape \(1, 24, 32, 1\)"),
    ("nyuv2", "depth_file_name", _save_npy(np.ones((12, 16, 1), np.float32)),
     r"depth target of size \(12, 16\) but its image .*image.0\.npy is \(24, 32\)"),
    ("NYUD_MT", "depth_file_name", _save_npy(np.ones((12, 16), np.float32)),
     r"depth target of size \(12, 16\)"),
    ("nyuv2", "normal_file_name", _save_npy(np.ones((*SIZE, 2), np.float32)), "normals of dtype"),
    ("nyuv2", "normal_file_name", _save_npy(np.ones((*SIZE, 3), np.int32)),
     "normals of dtype int32"),
    ("NYUD_MT", "sem_seg_file_name", _save_png(np.zeros((12, 16), np.uint8)),
     r"sem_seg target of size \(12, 16\)"),
    ("cityscapes_npy", "disparity_file_name", _save_npy(np.ones((*SIZE, 1), np.float32)),
     r"disparity target of size \(24, 32\)"),
    # label values out of range, NaN in labels and images
    ("NYUD_MT", "sem_seg_file_name", _save_png(np.full(SIZE, 41, np.uint8)),
     "label value 41 outside 0..40"),
    ("cityscapes", "sem_seg_file_name", _save_png(np.full((32, 64), 30, np.uint8)),
     "train id 30 is neither 0..18 nor 255"),
    ("cityscapes_npy", "sem_seg_file_name", _save_npy(np.full((32, 64), -2, np.int64)),
     "label value -2 outside -1..18"),
    ("nyuv2", "sem_seg_file_name", _save_npy(np.full(SIZE, np.nan, np.float32)),
     "label map holds non-integer"),
    ("nyuv2", "file_name", _save_npy(np.full((*SIZE, 3), np.nan, np.float32)),
     "image holds NaN or inf"),
    ("cityscapes_npy", "file_name", _save_npy(np.full((32, 64, 3), np.inf, np.float32)),
     "image holds NaN or inf"),
])
def test_broken_dense_file_is_rejected_naming_it(dense_record, layout, key, corrupt, match):
    record = dense_record(layout)
    corrupt(record[key])
    with pytest.raises(ValueError, match=re.escape(record[key]) + ": " + match):
        map_dense(record)


def test_truncated_npy_image_is_named_when_the_dataset_loads(dense_root, tmp_path):
    shutil.copytree(dense_root / "nyuv2", tmp_path / "nyuv2")
    image = tmp_path / "nyuv2" / "val" / "image" / "0.npy"
    truncate(image)
    with pytest.raises(ValueError, match=re.escape(str(image)) + ": not a readable .npy file"):
        load_nyuv2_13(str(tmp_path / "nyuv2" / "val"))


def test_image_size_differing_from_the_dataset_dict_is_named(dense_record):
    record = dense_record("NYUD_MT")
    Image.new("RGB", (40, 30)).save(record["file_name"], format="JPEG")  # after loading
    with pytest.raises(ValueError, match=re.escape(record["file_name"]) + r": image of size "
                                         r"\(30, 40\) but its dataset dict says \(24, 32\)"):
        map_dense(record)


@pytest.mark.parametrize("layout, task", [("nyuv2", "depth"), ("NYUD_MT", "depth"),
                                          ("cityscapes_npy", "disparity")])
def test_nan_inf_and_negative_depth_or_disparity_are_invalid_pixels(dense_record, layout, task):
    record = dense_record(layout)
    values = np.load(record[f"{task}_file_name"])
    values.reshape(-1)[:3] = np.nan, np.inf, -np.inf
    values.reshape(-1)[3] = -0.5
    np.save(record[f"{task}_file_name"], values)
    out = map_dense(record)[task].reshape(-1).numpy()
    assert (out[:4] == 0).all()
    flat = values.reshape(-1)
    np.testing.assert_array_equal(out[4:], np.where(flat[4:] > 0, flat[4:], 0))


def test_normal_with_a_nan_or_inf_component_is_an_invalid_pixel(dense_record):
    record = dense_record("nyuv2")
    normals = np.load(record["normal_file_name"])
    valid = np.flatnonzero(np.linalg.norm(normals, axis=2).reshape(-1) > 0)[:2]
    rows, cols = np.unravel_index(valid, SIZE)
    normals[rows[0], cols[0], 0] = np.nan
    normals[rows[1], cols[1], 2] = np.inf
    np.save(record["normal_file_name"], normals)
    out = map_dense(record)["normal"]
    for y, x in zip(rows, cols):
        assert out[:, y, x].tolist() == [0.0, 0.0, 0.0]
    norms = out.norm(dim=0)
    assert (norms > 0).sum() > 0 and torch.allclose(norms[norms > 0], torch.ones(1), atol=1e-5)
