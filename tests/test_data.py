"""Synthetic data in the real COCO and Cityscapes layouts, read by detectron2's stock loaders,
and sta_d2's dataset registrations on top of them."""
import json
import os
import re
import shutil

import numpy as np
import pycocotools.mask as mask_util
import pytest
from cityscapesscripts.helpers.labels import id2label, labels, name2label
from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog, DatasetMapper, MetadataCatalog
from detectron2.data.datasets import load_coco_json
from detectron2.data.datasets.builtin_meta import _get_builtin_metadata
from detectron2.data.datasets.cityscapes import load_cityscapes_instances, load_cityscapes_semantic
from detectron2.structures import BitMasks, PolygonMasks
from PIL import Image

from conftest import NUM_TRAIN, NUM_VAL
from sta_d2.data.datasets import (
    cityscapes_inst_sem_metadata,
    register_all_cityscapes_inst_sem,
    register_all_shapes,
    register_cityscapes_inst_sem,
    register_coco_instances_checked,
)
from sta_d2.data.synthetic import (
    CITYSCAPES_CITIES,
    SHAPE_CATEGORIES,
    generate_coco_shapes,
)

SHAPE_NAMES = [c["name"] for c in SHAPE_CATEGORIES]


def cityscapes_dirs(root, split):
    return os.path.join(root, "leftImg8bit", split), os.path.join(root, "gtFine", split)


def gt_path(image_file, kind):
    """The gtFine file of type ``kind`` (e.g. "instanceIds.png") of a leftImg8bit image."""
    gt = image_file.replace(f"{os.sep}leftImg8bit{os.sep}", f"{os.sep}gtFine{os.sep}")
    return gt.replace("leftImg8bit.png", "gtFine_" + kind)


def test_coco_layout_reads_with_detectron2s_loader(coco_root, new_name):
    for split, count in (("train", NUM_TRAIN), ("val", NUM_VAL)):
        json_file = os.path.join(coco_root, "annotations", f"instances_{split}2017.json")
        with open(json_file) as f:
            raw = json.load(f)
        assert [c["id"] for c in raw["categories"]] == [1, 2, 3]
        assert {a["category_id"] for a in raw["annotations"]} <= {1, 2, 3}
        assert len({a["id"] for a in raw["annotations"]}) == len(raw["annotations"])
        for anno in raw["annotations"]:
            assert anno["iscrowd"] == 0
            rle = mask_util.merge(mask_util.frPyObjects(anno["segmentation"], 96, 128))
            assert mask_util.area(rle) == pytest.approx(anno["area"], rel=0.15)
        name = new_name()
        dicts = load_coco_json(json_file, os.path.join(coco_root, f"{split}2017"), name)
        assert len(dicts) == count
        assert MetadataCatalog.get(name).thing_classes == SHAPE_NAMES
        assert MetadataCatalog.get(name).thing_dataset_id_to_contiguous_id == {1: 0, 2: 1, 3: 2}
        for record, raw_image in zip(dicts, sorted(raw["images"], key=lambda i: i["id"])):
            image = np.asarray(Image.open(record["file_name"]))
            assert image.shape == (96, 128, 3) == (raw_image["height"], raw_image["width"], 3)
            assert 1 <= len(record["annotations"]) <= 4
            for anno in record["annotations"]:
                x, y, w, h = anno["bbox"]
                (polygon,) = anno["segmentation"]
                xs, ys = polygon[0::2], polygon[1::2]
                assert (x, y, x + w, y + h) == pytest.approx((min(xs), min(ys), max(xs), max(ys)))
                assert 0 <= x and x + w <= 128 and 0 <= y and y + h <= 96 and w > 4 and h > 4
                mask = mask_util.decode(mask_util.frPyObjects([polygon], 96, 128))[..., 0] > 0
                # learnable: each shape is painted in its category's colour channel
                assert image[mask].mean(axis=0).argmax() == anno["category_id"]


def test_coco_generation_is_reproducible_and_rewrites_only_its_own_root(tmp_path):
    root = str(tmp_path / "shapes")
    generate_coco_shapes(root, 3, 1, image_size=(64, 64), seed=1)
    first = open(os.path.join(root, "annotations", "instances_train2017.json")).read()
    generate_coco_shapes(root, 2, 1, image_size=(64, 64), seed=1)
    assert sorted(os.listdir(os.path.join(root, "train2017"))) == [
        "000000000001.jpg", "000000000002.jpg"
    ]
    generate_coco_shapes(root, 3, 1, image_size=(64, 64), seed=1)
    assert open(os.path.join(root, "annotations", "instances_train2017.json")).read() == first
    foreign = tmp_path / "real_coco"
    (foreign / "train2017").mkdir(parents=True)
    with pytest.raises(FileExistsError, match="real_coco"):
        generate_coco_shapes(str(foreign), 1, 1)
    assert (foreign / "train2017").is_dir()


def test_cityscapes_layout_reads_with_detectron2s_loaders(cityscapes_root):
    thing_classes = cityscapes_inst_sem_metadata()["thing_classes"]
    for split, count in (("train", 4), ("val", 2)):
        image_dir, gt_dir = cityscapes_dirs(cityscapes_root, split)
        assert sorted(os.listdir(image_dir)) == sorted(CITYSCAPES_CITIES[split])
        for city in os.listdir(image_dir):
            for image in os.listdir(os.path.join(image_dir, city)):
                assert re.fullmatch(rf"{city}_\d{{6}}_000019_leftImg8bit\.png", image)
        instances = load_cityscapes_instances(image_dir, gt_dir, from_json=True, to_polygons=True)
        semantic = load_cityscapes_semantic(image_dir, gt_dir)
        assert len(instances) == len(semantic) == count
        for record, sem in zip(instances, semantic):
            assert record["file_name"] == sem["file_name"]
            with open(gt_path(record["file_name"], "polygons.json")) as f:
                objects = json.load(f)["objects"]
            things = [o for o in objects if name2label[o["label"]].hasInstances]
            assert len(record["annotations"]) == len(things) >= 1
            assert sorted(thing_classes[a["category_id"]] for a in record["annotations"]) == sorted(
                o["label"] for o in things
            )
            assert {o["label"] for o in objects} >= {"sky", "building", "road", "sidewalk"}

            train_ids = np.asarray(Image.open(sem["sem_seg_file_name"]))
            assert train_ids.shape == (record["height"], record["width"]) == (128, 256)
            assert set(np.unique(train_ids)) <= set(range(19)) | {255}
            assert 255 in train_ids  # the ego vehicle is ignored
            label_ids = np.asarray(Image.open(sem["sem_seg_file_name"].replace("TrainIds", "Ids")))
            to_train_id = np.full(256, 255, dtype=np.uint8)
            for label in labels:
                if 0 <= label.id < 256 and label.trainId >= 0:
                    to_train_id[label.id] = label.trainId
            np.testing.assert_array_equal(to_train_id[label_ids], train_ids)

            instance_ids = np.asarray(
                Image.open(sem["sem_seg_file_name"].replace("labelTrainIds", "instanceIds"))
            )
            thing_ids = np.unique(instance_ids[instance_ids >= 1000])
            assert len(thing_ids) == len(things)
            for value in thing_ids:  # class id * 1000 + index of the instance in its class
                assert id2label[value // 1000].hasInstances
            for label_name in {o["label"] for o in things}:
                k = sorted(v % 1000 for v in thing_ids if v // 1000 == name2label[label_name].id)
                assert k == list(range(sum(o["label"] == label_name for o in things)))
            stuff = instance_ids < 1000
            np.testing.assert_array_equal(instance_ids[stuff], label_ids[stuff])


def test_cityscapes_polygons_agree_with_the_instance_image(cityscapes_root):
    """detectron2's polygons (from the JSON) cover the pixels cityscapesscripts drew."""
    image_dir, gt_dir = cityscapes_dirs(cityscapes_root, "val")
    for record in load_cityscapes_instances(image_dir, gt_dir, from_json=True, to_polygons=True):
        h, w = record["height"], record["width"]
        instance_ids = np.asarray(Image.open(gt_path(record["file_name"], "instanceIds.png")))
        for anno in record["annotations"]:
            rle = mask_util.merge(mask_util.frPyObjects(anno["segmentation"], h, w))
            mask = mask_util.decode(rle) > 0
            values, counts = np.unique(instance_ids[mask], return_counts=True)
            drawn = instance_ids == values[counts.argmax()]
            assert values[counts.argmax()] >= 1000
            assert (drawn & mask).sum() / (drawn | mask).sum() > 0.7


def test_cityscapes_inst_sem_joins_both_targets_and_maps(cityscapes_root, new_name):
    name = new_name()
    register_cityscapes_inst_sem(name, *cityscapes_dirs(cityscapes_root, "train"))
    meta = MetadataCatalog.get(name)
    builtin = _get_builtin_metadata("cityscapes")
    assert meta.thing_classes == builtin["thing_classes"]
    assert meta.stuff_classes == builtin["stuff_classes"]
    assert (meta.evaluator_type, meta.ignore_label) == ("cityscapes_inst_sem", 255)
    dicts = DatasetCatalog.get(name)
    assert len(dicts) == 4
    for record in dicts:
        stem = os.path.basename(record["file_name"])[: -len("leftImg8bit.png")]
        assert os.path.basename(record["sem_seg_file_name"]) == stem + "gtFine_labelTrainIds.png"
        assert os.path.isfile(record["sem_seg_file_name"]) and record["annotations"]

    cfg = get_cfg()
    cfg.MODEL.MASK_ON = True
    cfg.INPUT.MIN_SIZE_TRAIN = (64,)
    cfg.INPUT.MAX_SIZE_TRAIN = 128
    out = DatasetMapper(cfg, is_train=True)(dicts[0])
    assert out["image"].shape == (3, 64, 128)
    assert out["sem_seg"].shape == (64, 128)
    assert set(out["sem_seg"].unique().tolist()) <= set(range(19)) | {255}
    instances = out["instances"]
    assert len(instances) == len(dicts[0]["annotations"])
    assert isinstance(instances.gt_masks, PolygonMasks)
    # after the same resize and flip, the semantic target shows each instance's class under it
    masks = BitMasks.from_polygon_masks(instances.gt_masks, 64, 128).tensor
    for mask, thing_class in zip(masks, instances.gt_classes.tolist()):
        stuff_id = meta.stuff_classes.index(meta.thing_classes[thing_class])
        assert (out["sem_seg"][mask] == stuff_id).float().mean() > 0.8


@pytest.fixture
def named_datasets_at(reregister):
    """Re-registers sta_d2's named R-CNN datasets at another root."""
    names = ["shapes_train", "shapes_val", "cityscapes_fine_inst_sem_train",
             "cityscapes_fine_inst_sem_val"]
    return lambda root: reregister(root, names, register_all_shapes, register_all_cityscapes_inst_sem)


def test_named_datasets_live_under_detectron2_datasets(coco_root, cityscapes_root, tmp_path,
                                                      named_datasets_at):
    root = os.getenv("DETECTRON2_DATASETS", "datasets")
    assert MetadataCatalog.get("shapes_val").json_file == os.path.join(
        root, "shapes", "annotations", "instances_val2017.json")
    assert MetadataCatalog.get("cityscapes_fine_inst_sem_val").gt_dir == os.path.join(
        root, "cityscapes", "gtFine", "val")
    shutil.copytree(coco_root, tmp_path / "shapes")
    shutil.copytree(cityscapes_root, tmp_path / "cityscapes")
    named_datasets_at(str(tmp_path))
    assert len(DatasetCatalog.get("shapes_train")) == NUM_TRAIN
    assert MetadataCatalog.get("shapes_train").evaluator_type == "coco"
    assert len(DatasetCatalog.get("cityscapes_fine_inst_sem_val")) == 2


# ---------------------------------------------------------------- bad input


def test_shapes_bad_input_names_the_path(coco_root, tmp_path, new_name):
    def register(root):
        name = new_name()
        json_file = os.path.join(root, "annotations", "instances_train2017.json")
        register_coco_instances_checked(name, json_file, os.path.join(root, "train2017"))
        return name

    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "missing"))):
        DatasetCatalog.get(register(str(tmp_path / "missing")))

    root = tmp_path / "shapes"
    shutil.copytree(coco_root, root)
    shutil.rmtree(root / "train2017")
    with pytest.raises(FileNotFoundError, match="image directory .*train2017"):
        DatasetCatalog.get(register(str(root)))

    (root / "train2017").mkdir()
    json_file = root / "annotations" / "instances_train2017.json"
    json_file.write_text('{"images": [')
    with pytest.raises(ValueError, match=re.escape(str(json_file))):
        DatasetCatalog.get(register(str(root)))

    json_file.unlink()
    with pytest.raises(FileNotFoundError, match="annotation file .*instances_train2017.json"):
        DatasetCatalog.get(register(str(root)))


@pytest.fixture
def small_cityscapes(cityscapes_root, tmp_path):
    root = tmp_path / "cityscapes"
    shutil.copytree(cityscapes_root, root)
    return root


def test_cityscapes_missing_directories_are_named(small_cityscapes, tmp_path, new_name):
    name = new_name()
    register_cityscapes_inst_sem(name, *cityscapes_dirs(str(tmp_path / "nowhere"), "val"))
    with pytest.raises(FileNotFoundError, match=r"nowhere.*leftImg8bit.*README"):
        DatasetCatalog.get(name)
    shutil.rmtree(small_cityscapes / "gtFine" / "val")
    name = new_name()
    register_cityscapes_inst_sem(name, *cityscapes_dirs(str(small_cityscapes), "val"))
    with pytest.raises(FileNotFoundError, match=r"gtFine.val"):
        DatasetCatalog.get(name)
    shutil.rmtree(small_cityscapes / "leftImg8bit" / "train")
    (small_cityscapes / "leftImg8bit" / "train").mkdir()
    name = new_name()
    register_cityscapes_inst_sem(name, *cityscapes_dirs(str(small_cityscapes), "train"))
    with pytest.raises(FileNotFoundError, match=r"no images in .*leftImg8bit.train"):
        DatasetCatalog.get(name)


def test_cityscapes_missing_label_train_ids_says_how_to_make_them(small_cityscapes, new_name):
    missing = sorted((small_cityscapes / "gtFine" / "val").glob("*/*_labelTrainIds.png"))[-1]
    missing.unlink()
    name = new_name()
    register_cityscapes_inst_sem(name, *cityscapes_dirs(str(small_cityscapes), "val"))
    with pytest.raises(FileNotFoundError, match=re.escape(missing.name)) as error:
        DatasetCatalog.get(name)
    assert f"CITYSCAPES_DATASET={small_cityscapes} csCreateTrainIdLabelImgs" in str(error.value)


@pytest.mark.parametrize(
    "text, match",
    [('{"imgHeight": 128, "objects": [', "not a Cityscapes polygons JSON"),
     ('{"imgHeight": 128, "imgWidth": 256, "objects": [{"label": "spaceship", '
      '"polygon": [[0, 0], [5, 0], [5, 5]]}]}', "unknown Cityscapes label.*spaceship")],
)
def test_cityscapes_bad_annotation_names_the_file(small_cityscapes, new_name, text, match):
    bad = sorted((small_cityscapes / "gtFine" / "val").glob("*/*_polygons.json"))[-1]
    bad.write_text(text)
    name = new_name()
    register_cityscapes_inst_sem(name, *cityscapes_dirs(str(small_cityscapes), "val"))
    with pytest.raises(ValueError, match=re.escape(str(bad)) + ".*" + match):
        DatasetCatalog.get(name)
