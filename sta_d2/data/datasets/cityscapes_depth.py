"""Cityscapes for dense multi-task learning: 19-class segmentation and disparity.

Two layouts: the raw Cityscapes download (``leftImg8bit``, ``gtFine`` labelTrainIds,
``disparity``, ``camera``) and mtan's preprocessed ``.npy`` files. See datasets/README.md.
"""
import glob
import os

from PIL import Image

from .cityscapes import cityscapes_inst_sem_metadata
from .dense import load_numbered_npy, register_dense_dataset

CITYSCAPES_DENSE_TASKS = ("sem_seg", "disparity")
_IMAGE_SUFFIX = "_leftImg8bit.png"
_DISPARITY_SUFFIX = "_disparity.png"
# What mtan's preprocessed depth/{i}.npy holds: Cityscapes' disparity rescaled, not metres.
MTAN_DISPARITY_UNIT = "mtan inverse depth (disparity PNG value / 65536, as stored)"


def _require_dir(path):
    if not os.path.isdir(path):
        raise FileNotFoundError(
            f"Cityscapes directory {path} does not exist; see datasets/README.md for the expected "
            "layout under $DETECTRON2_DATASETS"
        )


def load_cityscapes_depth_seg(root, split):
    """Dataset dicts of Cityscapes ``split`` at ``root``: each ``leftImg8bit`` image with its
    ``gtFine`` labelTrainIds, its ``disparity`` PNG and, when ``root/camera`` exists, its camera
    JSON (``camera_file_name``). Every image needs every file and every disparity its image."""
    image_dir, gt_dir, disparity_dir, camera_dir = (
        os.path.join(root, sub, split) for sub in ("leftImg8bit", "gtFine", "disparity", "camera")
    )
    for path in (image_dir, gt_dir, disparity_dir):
        _require_dir(path)
    with_camera = os.path.isdir(os.path.join(root, "camera"))
    if with_camera:
        _require_dir(camera_dir)
    images = sorted(glob.glob(os.path.join(image_dir, "*", "*" + _IMAGE_SUFFIX)))
    if not images:
        raise FileNotFoundError(f"no *{_IMAGE_SUFFIX} images in {image_dir}/<city>/")
    records = []
    for image in images:
        city = os.path.basename(os.path.dirname(image))
        stem = os.path.basename(image)[: -len(_IMAGE_SUFFIX)]
        record = {
            "image_id": stem,
            "file_name": image,
            "sem_seg_file_name": os.path.join(gt_dir, city, f"{stem}_gtFine_labelTrainIds.png"),
            "disparity_file_name": os.path.join(disparity_dir, city, stem + _DISPARITY_SUFFIX),
            "dense_format": "cityscapes",
        }
        if with_camera:
            record["camera_file_name"] = os.path.join(camera_dir, city, f"{stem}_camera.json")
        if not os.path.isfile(record["sem_seg_file_name"]):
            raise FileNotFoundError(
                f"semantic target {record['sem_seg_file_name']} of {image} is missing; create the "
                f"labelTrainIds images with: CITYSCAPES_DATASET={root} csCreateTrainIdLabelImgs"
            )
        for key in ("disparity_file_name", "camera_file_name"):
            if key in record and not os.path.isfile(record[key]):
                raise FileNotFoundError(f"{record[key]} of {image} is missing")
        with Image.open(image) as im:
            record["width"], record["height"] = im.size
        records.append(record)
    with_image = {r["disparity_file_name"] for r in records}
    for disparity in sorted(glob.glob(os.path.join(disparity_dir, "*", "*" + _DISPARITY_SUFFIX))):
        if disparity not in with_image:
            city = os.path.basename(os.path.dirname(disparity))
            stem = os.path.basename(disparity)[: -len(_DISPARITY_SUFFIX)]
            raise FileNotFoundError(
                f"image {os.path.join(image_dir, city, stem + _IMAGE_SUFFIX)} of {disparity} is "
                "missing"
            )
    return records


def load_cityscapes_npy(split_dir):
    """Dataset dicts of mtan's preprocessed Cityscapes split ``split_dir``:
    ``image/{i}.npy``, ``label_19/{i}.npy`` (train ids, -1 = ignore), ``depth/{i}.npy``
    (disparity as mtan stores it, the ``disparity`` task)."""
    return load_numbered_npy(split_dir, {"sem_seg": "label_19", "disparity": "depth"},
                             "cityscapes_npy")


def register_all_cityscapes_depth(root):
    """Register ``cityscapes_depth_seg_{train,val}`` at ``root/cityscapes`` and
    ``cityscapes_npy_{train,val}`` at ``root/cityscapes_npy``."""
    classes = cityscapes_inst_sem_metadata()["stuff_classes"]
    cityscapes = os.path.join(root, "cityscapes")
    for split in ("train", "val"):
        register_dense_dataset(
            f"cityscapes_depth_seg_{split}",
            lambda split=split: load_cityscapes_depth_seg(cityscapes, split),
            tasks=CITYSCAPES_DENSE_TASKS, classes=classes, depth_unit="pixels (disparity)",
            data_dir=cityscapes,
        )
        split_dir = os.path.join(root, "cityscapes_npy", split)
        register_dense_dataset(
            f"cityscapes_npy_{split}",
            lambda split_dir=split_dir: load_cityscapes_npy(split_dir),
            tasks=CITYSCAPES_DENSE_TASKS, classes=classes, depth_unit=MTAN_DISPARITY_UNIT,
            data_dir=split_dir,
        )
