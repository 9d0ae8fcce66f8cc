"""Cityscapes fine with instances and semantic labels of the same image in one dataset dict.

detectron2's builtin Cityscapes splits give either instances or semantics; a multi-task model
(e.g. Panoptic FPN on Cityscapes) needs both per image.
"""
import glob
import json
import os

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets.cityscapes import load_cityscapes_instances, load_cityscapes_semantic

# name -> (image dir, gt dir), relative to the dataset root
CITYSCAPES_INST_SEM_SPLITS = {
    "cityscapes_fine_inst_sem_train": ("cityscapes/leftImg8bit/train", "cityscapes/gtFine/train"),
    "cityscapes_fine_inst_sem_val": ("cityscapes/leftImg8bit/val", "cityscapes/gtFine/val"),
}
_IMAGE_SUFFIX = "leftImg8bit.png"


def cityscapes_inst_sem_metadata():
    """thing_classes and stuff_classes (the 19 train ids) from cityscapesscripts' label table.

    thing_classes are ordered as ``load_cityscapes_instances`` numbers them, stuff_classes by
    the train ids that ``*_labelTrainIds.png`` holds.
    """
    from cityscapesscripts.helpers.labels import labels

    things = [label.name for label in labels if label.hasInstances and not label.ignoreInEval]
    train = sorted((label.trainId, label.name) for label in labels if 0 <= label.trainId < 255)
    return {"thing_classes": things, "stuff_classes": [name for _, name in train]}


def _check_gt_files(image_dir, gt_dir):
    """Raise naming what is missing (a directory, all images, an image's polygons JSON or
    labelTrainIds png) before detectron2's loaders fail less clearly or in a worker."""
    for path in (image_dir, gt_dir):
        if not os.path.isdir(path):
            raise FileNotFoundError(
                f"Cityscapes directory {path} does not exist; see datasets/README.md for the "
                "expected layout under $DETECTRON2_DATASETS"
            )
    images = sorted(glob.glob(os.path.join(image_dir, "*", "*")))
    if not images:
        raise FileNotFoundError(f"no images in {image_dir}/<city>/; see datasets/README.md")
    for image in images:
        if not image.endswith(_IMAGE_SUFFIX):
            raise ValueError(f"{image}: not a Cityscapes *_{_IMAGE_SUFFIX} image")
        city = os.path.basename(os.path.dirname(image))
        stem = os.path.join(gt_dir, city, os.path.basename(image)[: -len(_IMAGE_SUFFIX)])
        if not os.path.isfile(stem + "gtFine_polygons.json"):
            raise FileNotFoundError(f"annotation {stem}gtFine_polygons.json of {image} is missing")
        if not os.path.isfile(stem + "gtFine_labelTrainIds.png"):
            root = os.path.dirname(os.path.dirname(os.path.normpath(gt_dir)))
            raise FileNotFoundError(
                f"semantic target {stem}gtFine_labelTrainIds.png of {image} is missing; create "
                f"the labelTrainIds images with cityscapesscripts: "
                f"CITYSCAPES_DATASET={root} csCreateTrainIdLabelImgs"
            )


def _bad_annotation(gt_dir):
    """(path, reason) of the first polygons JSON that does not parse, names an unknown label or
    has a polygon of fewer than three points (detectron2's loader fails on these without naming
    the file, or, for an empty polygon, drops the object silently)."""
    from cityscapesscripts.helpers.labels import name2label

    known = set(name2label) | {f"{name}group" for name in name2label}
    for path in sorted(glob.glob(os.path.join(gt_dir, "*", "*_gtFine_polygons.json"))):
        try:
            with open(path) as f:
                objects = [(i, obj["label"], len(obj["polygon"]))
                           for i, obj in enumerate(json.load(f)["objects"]) if "deleted" not in obj]
        except (ValueError, KeyError, TypeError) as e:
            return path, f"not a Cityscapes polygons JSON ({type(e).__name__}: {e})"
        unknown = sorted({label for _, label, _ in objects} - known)
        if unknown:
            return path, f"unknown Cityscapes label(s) {unknown}"
        short = [f"object {i} ({label!r}): {n} points" for i, label, n in objects if n < 3]
        if short:
            return path, f"polygon(s) of fewer than 3 points: {'; '.join(short)}"
    return None


def load_cityscapes_inst_sem(image_dir, gt_dir):
    """Dataset dicts of ``load_cityscapes_instances(from_json=True, to_polygons=True)``, each
    with the ``sem_seg_file_name`` (``*_gtFine_labelTrainIds.png``) that
    ``load_cityscapes_semantic`` gives for the same image.

    Missing files and broken polygons JSONs (see :func:`_bad_annotation`) raise naming the file
    before detectron2's loaders run.
    """
    _check_gt_files(image_dir, gt_dir)
    bad = _bad_annotation(gt_dir)
    if bad is not None:
        raise ValueError(f"{bad[0]}: {bad[1]}")
    instances = load_cityscapes_instances(image_dir, gt_dir, from_json=True, to_polygons=True)
    semantic = load_cityscapes_semantic(image_dir, gt_dir)
    sem_seg_files = {record["file_name"]: record["sem_seg_file_name"] for record in semantic}
    for record in instances:
        record["sem_seg_file_name"] = sem_seg_files[record["file_name"]]
    return instances


def register_cityscapes_inst_sem(name, image_dir, gt_dir):
    """Register ``name`` for :func:`load_cityscapes_inst_sem`, with Cityscapes metadata and
    evaluator_type "cityscapes_inst_sem" (instance AP and semantic mIoU)."""
    DatasetCatalog.register(name, lambda: load_cityscapes_inst_sem(image_dir, gt_dir))
    MetadataCatalog.get(name).set(
        image_dir=image_dir,
        gt_dir=gt_dir,
        evaluator_type="cityscapes_inst_sem",
        ignore_label=255,
        **cityscapes_inst_sem_metadata(),
    )


def register_all_cityscapes_inst_sem(root):
    """Register ``cityscapes_fine_inst_sem_{train,val}`` at ``root/cityscapes``."""
    for name, (image_dir, gt_dir) in CITYSCAPES_INST_SEM_SPLITS.items():
        image_dir, gt_dir = os.path.join(root, image_dir), os.path.join(root, gt_dir)
        register_cityscapes_inst_sem(name, image_dir, gt_dir)
