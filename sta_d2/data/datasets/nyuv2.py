"""NYUv2 for dense multi-task learning: the 13-class mtan layout and the 40-class NYUD-MT layout.

Both label semantic segmentation, depth (metres) and surface normals of the same 1449 images
(795 train / 654 val). See datasets/README.md for the layouts and ``datasets/prepare_nyuv2.py``
to make both from the official ``nyu_depth_v2_labeled.mat``. The ``train_extra`` splits, a
layout sta_d2 defines (no official release has one), hold further training images labelled for
some tasks only, e.g. depth-only frames of the raw NYU Depth v2 videos.
"""
import os

from PIL import Image

from .dense import load_numbered_npy, log_labelled_counts, missing_data_hint, register_dense_dataset

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


def load_nyuv2_13(split_dir, *, partially_labelled=False):
    """Dataset dicts of mtan's preprocessed NYUv2 split ``split_dir`` (e.g. ``nyuv2/train``):
    ``{image,label,depth,normal}/{i}.npy``; ``partially_labelled``: see
    :func:`~sta_d2.data.datasets.dense.load_numbered_npy`."""
    return load_numbered_npy(split_dir, _MTAN_DIRS, "nyuv2_npy",
                             partially_labelled=partially_labelled)


def load_nyud_mt(root, split, *, partially_labelled=False):
    """Dataset dicts of the NYUD-MT (MTI-Net) layout at ``root`` for the ids in
    ``root/gt_sets/{split}.txt``: ``images/{id}.jpg``, ``segmentation/{id}.png``,
    ``depth/{id}.npy``, ``normals/{id}.npy``.

    By default every id needs every file. With ``partially_labelled``, an id without a task's
    file has no label for that task (no ``<task>_file_name``); the counts per task are logged.
    """
    split_file = os.path.join(root, "gt_sets", f"{split}.txt")
    if not os.path.isfile(split_file):
        extra = " --num-train-extra N" if split == "train_extra" else ""
        raise FileNotFoundError(f"NYUD-MT split file {split_file} does not exist; "
                                f"{missing_data_hint(root, 'nyud_mt', extra)}")
    with open(split_file) as f:
        ids = [line.strip() for line in f if line.strip()]
    if not ids:
        raise ValueError(f"{split_file} lists no image id")
    records = []
    for image_id in ids:
        record = {"image_id": image_id, "dense_format": "nyud_mt",
                  "file_name": os.path.join(root, "images", f"{image_id}.jpg")}
        if not os.path.isfile(record["file_name"]):
            raise FileNotFoundError(
                f"{record['file_name']} (of id {image_id!r} in {split_file}) is missing"
            )
        for task, (sub, ext) in _NYUD_MT_FILES.items():
            path = os.path.join(root, sub, image_id + ext)
            if os.path.isfile(path):
                record[f"{task}_file_name"] = path
            elif not partially_labelled:
                raise FileNotFoundError(f"{path} (of id {image_id!r} in {split_file}) is missing")
        with Image.open(record["file_name"]) as image:
            record["width"], record["height"] = image.size
        records.append(record)
    if partially_labelled:
        log_labelled_counts(split_file, records, _NYUD_MT_FILES)
    return records


def register_nyuv2_13(name, split_dir, *, partially_labelled=False):
    """Register ``name`` for :func:`load_nyuv2_13` with the 13-class dense metadata."""
    register_dense_dataset(
        name, lambda: load_nyuv2_13(split_dir, partially_labelled=partially_labelled),
        tasks=NYUV2_TASKS, classes=NYUV2_13_CLASSES, depth_unit="metres",
        partially_labelled=partially_labelled, data_dir=split_dir,
    )


def register_nyud_mt(name, root, split, *, partially_labelled=False):
    """Register ``name`` for :func:`load_nyud_mt` with the 40-class dense metadata."""
    register_dense_dataset(
        name, lambda: load_nyud_mt(root, split, partially_labelled=partially_labelled),
        tasks=NYUV2_TASKS, classes=NYUV2_40_CLASSES, depth_unit="metres",
        partially_labelled=partially_labelled, data_dir=root,
    )


def register_all_nyuv2(root):
    """Register ``nyuv2_13_{train,val}`` at ``root/nyuv2`` and ``nyuv2_40_{train,val}`` at
    ``root/NYUD_MT``, and their partially labelled extra training splits (e.g. depth-only frames
    users add): ``nyuv2_13_train_extra`` at ``root/nyuv2/train_extra`` and
    ``nyuv2_40_train_extra``, the ids of ``root/NYUD_MT/gt_sets/train_extra.txt``."""
    nyuv2, nyud_mt = os.path.join(root, "nyuv2"), os.path.join(root, "NYUD_MT")
    for split in ("train", "val"):
        register_nyuv2_13(f"nyuv2_13_{split}", os.path.join(nyuv2, split))
        register_nyud_mt(f"nyuv2_40_{split}", nyud_mt, split)
    register_nyuv2_13("nyuv2_13_train_extra", os.path.join(nyuv2, "train_extra"),
                      partially_labelled=True)
    register_nyud_mt("nyuv2_40_train_extra", nyud_mt, "train_extra", partially_labelled=True)
