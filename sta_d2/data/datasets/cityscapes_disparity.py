"""Cityscapes for dense multi-task learning: 19-class segmentation and disparity.

Two layouts: the raw Cityscapes download (``leftImg8bit``, ``gtFine`` labelTrainIds,
``disparity``, ``camera``) and mtan's preprocessed ``.npy`` files. See datasets/README.md.
"""
import glob
import os

from PIL import Image

from .cityscapes import cityscapes_inst_sem_metadata
from .dense import load_numbered_npy, log_labelled_counts, missing_data_hint, register_dense_dataset

CITYSCAPES_DENSE_TASKS = ("sem_seg", "disparity")
_IMAGE_SUFFIX = "_leftImg8bit.png"
_DISPARITY_SUFFIX = "_disparity.png"
# What mtan's preprocessed depth/{i}.npy holds: Cityscapes' disparity rescaled, not metres.
MTAN_DISPARITY_UNIT = "mtan inverse depth (disparity PNG value / 65536, as stored)"


def _require_dir(path, root):
    if not os.path.isdir(path):
        raise FileNotFoundError(f"Cityscapes directory {path} does not exist; "
                                f"{missing_data_hint(root, 'cityscapes')}")


def load_cityscapes_depth_seg(root, split, *, partially_labelled=False):
    """Dataset dicts of Cityscapes ``split`` at ``root``: each ``leftImg8bit`` image with its
    ``gtFine`` labelTrainIds, its ``disparity`` PNG and, when ``root/camera`` exists, its camera
    JSON (``camera_file_name``). A disparity without its image raises.

    By default every image needs every file. With ``partially_labelled``, an image without its
    labelTrainIds or disparity file (or whose split lacks that directory) has no label for that
    task (no ``<task>_file_name``), and only images with a disparity need a camera JSON; the
    counts per task are logged.
    """
    image_dir, gt_dir, disparity_dir, camera_dir = (
        os.path.join(root, sub, split) for sub in ("leftImg8bit", "gtFine", "disparity", "camera")
    )
    for path in (image_dir,) if partially_labelled else (image_dir, gt_dir, disparity_dir):
        _require_dir(path, root)
    with_camera = os.path.isdir(os.path.join(root, "camera"))
    if with_camera and os.path.isdir(disparity_dir):
        _require_dir(camera_dir, root)
    images = sorted(glob.glob(os.path.join(image_dir, "*", "*" + _IMAGE_SUFFIX)))
    if not images:
        raise FileNotFoundError(f"no *{_IMAGE_SUFFIX} images in {image_dir}/<city>/")
    records = []
    for image in images:
        city = os.path.basename(os.path.dirname(image))
        stem = os.path.basename(image)[: -len(_IMAGE_SUFFIX)]
        record = {"image_id": stem, "file_name": image, "dense_format": "cityscapes"}
        sem_seg = os.path.join(gt_dir, city, f"{stem}_gtFine_labelTrainIds.png")
        if os.path.isfile(sem_seg):
            record["sem_seg_file_name"] = sem_seg
        elif not partially_labelled:
            raise FileNotFoundError(
                f"semantic target {sem_seg} of {image} is missing; create the labelTrainIds "
                f"images with: CITYSCAPES_DATASET={root} csCreateTrainIdLabelImgs"
            )
        disparity = os.path.join(disparity_dir, city, stem + _DISPARITY_SUFFIX)
        if os.path.isfile(disparity):
            record["disparity_file_name"] = disparity
        elif not partially_labelled:
            raise FileNotFoundError(f"{disparity} of {image} is missing")
        if with_camera and "disparity_file_name" in record:
            record["camera_file_name"] = os.path.join(camera_dir, city, f"{stem}_camera.json")
            if not os.path.isfile(record["camera_file_name"]):
                raise FileNotFoundError(f"{record['camera_file_name']} of {image} is missing")
        with Image.open(image) as im:
            record["width"], record["height"] = im.size
        records.append(record)
    with_image = {r.get("disparity_file_name") for r in records}
    for disparity in sorted(glob.glob(os.path.join(disparity_dir, "*", "*" + _DISPARITY_SUFFIX))):
        if disparity not in with_image:
            city = os.path.basename(os.path.dirname(disparity))
            stem = os.path.basename(disparity)[: -len(_DISPARITY_SUFFIX)]
            raise FileNotFoundError(
                f"image {os.path.join(image_dir, city, stem + _IMAGE_SUFFIX)} of {disparity} is "
                "missing"
            )
    if partially_labelled:
        log_labelled_counts(f"Cityscapes {split} at {root}", records, CITYSCAPES_DENSE_TASKS)
    return records


def load_cityscapes_npy(split_dir, *, partially_labelled=False):
    """Dataset dicts of mtan's preprocessed Cityscapes split ``split_dir``:
    ``image/{i}.npy``, ``label_19/{i}.npy`` (train ids, -1 = ignore), ``depth/{i}.npy``
    (disparity as mtan stores it, the ``disparity`` task); ``partially_labelled``: see
    :func:`~sta_d2.data.datasets.dense.load_numbered_npy`."""
    return load_numbered_npy(split_dir, {"sem_seg": "label_19", "disparity": "depth"},
                             "cityscapes_npy", partially_labelled=partially_labelled)


def register_all_cityscapes_disparity(root):
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
