"""NYUv2 for dense multi-task learning: the 13-class mtan layout and the 40-class NYUD-MT layout.

Both label semantic segmentation, depth (metres) and surface normals of the same 1449 images
(795 train / 654 val). See datasets/README.md for the layouts and ``datasets/prepare_nyuv2.py``
to make both from the official ``nyu_depth_v2_labeled.mat``.
"""
import os

from PIL import Image

from .dense import load_numbered_npy, register_dense_dataset

# The 13 classes of the SceneNet/ankurhanda mapping, in label order 0..12 (mtan's labels).
NYUV2_13_CLASSES = (
    "bed", "books", "ceiling", "chair", "floor", "furniture", "objects", "picture", "sofa",
    "table", "tv", "wall", "window",
)
# Gupta et al.'s 40 classes (classMapping40.mat's className), in label order 0..39.
NYUV2_40_CLASSES = (
    "wall", "floor", "cabinet", "bed", "chair", "sofa", "table", "door", "window", "bookshelf",
    "picture", "counter", "blinds", "desk", "shelves", "curtain", "dresser", "pillow", "mirror",
    "floor mat", "clothes", "ceiling", "books", "refridgerator", "television", "paper", "towel",
    "shower curtain", "box", "whiteboard", "person", "night stand", "toilet", "sink", "lamp",
    "bathtub", "bag", "otherstructure", "otherfurniture", "otherprop",
)
NYUV2_TASKS = ("sem_seg", "depth", "normal")
# file sub-directories of the tasks
_MTAN_DIRS = {"sem_seg": "label", "depth": "depth", "normal": "normal"}
_NYUD_MT_FILES = {"sem_seg": ("segmentation", ".png"), "depth": ("depth", ".npy"),
                  "normal": ("normals", ".npy")}


def load_nyuv2_13(split_dir):
    """Dataset dicts of mtan's preprocessed NYUv2 split ``split_dir`` (e.g. ``nyuv2/train``):
    ``{image,label,depth,normal}/{i}.npy``."""
    return load_numbered_npy(split_dir, _MTAN_DIRS, "nyuv2_npy")


def load_nyud_mt(root, split):
    """Dataset dicts of the NYUD-MT (MTI-Net) layout at ``root`` for the ids in
    ``root/gt_sets/{split}.txt``: ``images/{id}.jpg``, ``segmentation/{id}.png``,
    ``depth/{id}.npy``, ``normals/{id}.npy``."""
    split_file = os.path.join(root, "gt_sets", f"{split}.txt")
    if not os.path.isfile(split_file):
        raise FileNotFoundError(
            f"NYUD-MT split file {split_file} does not exist; see datasets/README.md"
        )
    with open(split_file) as f:
        ids = [line.strip() for line in f if line.strip()]
    if not ids:
        raise ValueError(f"{split_file} lists no image id")
    records = []
    for image_id in ids:
        record = {"image_id": image_id, "dense_format": "nyud_mt",
                  "file_name": os.path.join(root, "images", f"{image_id}.jpg")}
        for task, (sub, ext) in _NYUD_MT_FILES.items():
            record[f"{task}_file_name"] = os.path.join(root, sub, image_id + ext)
        for key in ("file_name", *(f"{t}_file_name" for t in _NYUD_MT_FILES)):
            if not os.path.isfile(record[key]):
                raise FileNotFoundError(
                    f"{record[key]} (of id {image_id!r} in {split_file}) is missing"
                )
        with Image.open(record["file_name"]) as image:
            record["width"], record["height"] = image.size
        records.append(record)
    return records


def register_nyuv2_13(name, split_dir):
    """Register ``name`` for :func:`load_nyuv2_13` with the 13-class dense metadata."""
    register_dense_dataset(name, lambda: load_nyuv2_13(split_dir), tasks=NYUV2_TASKS,
                           classes=NYUV2_13_CLASSES, depth_unit="metres", data_dir=split_dir)


def register_nyud_mt(name, root, split):
    """Register ``name`` for :func:`load_nyud_mt` with the 40-class dense metadata."""
    register_dense_dataset(name, lambda: load_nyud_mt(root, split), tasks=NYUV2_TASKS,
                           classes=NYUV2_40_CLASSES, depth_unit="metres", data_dir=root)


def register_all_nyuv2(root):
    """Register ``nyuv2_13_{train,val}`` at ``root/nyuv2`` and ``nyuv2_40_{train,val}`` at
    ``root/NYUD_MT``."""
    for split in ("train", "val"):
        register_nyuv2_13(f"nyuv2_13_{split}", os.path.join(root, "nyuv2", split))
        register_nyud_mt(f"nyuv2_40_{split}", os.path.join(root, "NYUD_MT"), split)
