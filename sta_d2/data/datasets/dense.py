"""What the dense multi-task datasets share: reading and decoding their files, and registration.

Each dataset dict names its layout under ``"dense_format"`` (one of :data:`DENSE_FORMATS`) and
its files under ``"file_name"`` and ``"<task>_file_name"``, for tasks of ``sta_d2.dense_tasks``.
:func:`read_dense_sample` decodes them to one convention, whatever the layout: ``"image"``
float32 (H, W, 3), RGB, 0..255, and each task's target as its descriptor defines it, e.g.

- ``"sem_seg"``: int64 (H, W), classes 0..C-1, 255 = ignore;
- ``"depth"``: float32 (H, W), metres, 0 = invalid;
- ``"normal"``: float32 (H, W, 3), unit vectors, all zero = invalid;
- ``"disparity"``: float32 (H, W), 0 = invalid.

A task is read by its layout's reader in :data:`DENSE_FORMATS` or, if the layout has none, by
its descriptor's default reader (a ``.npy`` file). A dict only has the ``"<task>_file_name"`` of
the tasks its image is labelled for: all of its dataset's tasks, unless the dataset is loaded
(and registered) as ``partially_labelled``. A file that cannot be read (truncated, not an image
or .npy), has the wrong dtype, values or shape, or whose size differs from its image's (or the
image's from the dict's height/width) raises an error naming it. NaN, inf and negative depth or
disparity, and normals with a NaN or inf component, are invalid pixels (0); NaN or inf in an
image is an error.
"""
import logging
import os
import re

import numpy as np
from detectron2.data import DatasetCatalog, MetadataCatalog
from PIL import Image

from ...dense_tasks import build_dense_task, dense_task_names
from ...dense_tasks.base import DATA_HINT, fail_file, load_npy
from ...dense_tasks.sem_seg import IGNORE_LABEL, SemSegTask, integer_labels

logger = logging.getLogger(__name__)


def _npy_image(path):
    """A float (H, W, 3) RGB image in [0, 1] (mtan's layouts), scaled to 0..255."""
    image = load_npy(path)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype.kind != "f":
        fail_file(path, f"image of dtype {image.dtype} and shape {image.shape}; expected float "
                        "(H, W, 3) in [0, 1]")
    if not np.isfinite(image).all():
        fail_file(path, "image holds NaN or inf values")
    if image.size and (image.min() < 0 or image.max() > 1 + 1e-3):
        fail_file(path, f"image values in [{image.min()}, {image.max()}]; expected [0, 1]")
    return image.astype(np.float32) * 255


def _pil_pixels(path, mode=None):
    """The pixels of an image file, converted to ``mode`` if given. PIL names no file when a
    truncated one fails to decode, so any decoding failure raises naming it."""
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert(mode) if mode else image)
    except FileNotFoundError:
        raise
    except Exception as e:  # whatever PIL raises on a broken file (OSError, SyntaxError, ...)
        fail_file(path, f"not a readable image ({type(e).__name__}: {e})")


def _rgb_file(path):
    """A JPEG/PNG image, as RGB."""
    return _pil_pixels(path, "RGB").astype(np.float32)


def _png_labels(path):
    labels = _pil_pixels(path)
    if labels.dtype != np.uint8:
        fail_file(path, f"label image of dtype {labels.dtype}; expected an 8-bit PNG")
    return labels


def _nyud_png_label(path):
    """NYUD-MT's segmentation PNGs: 0 = unlabelled (ignore), 1..40 = classes 0..39."""
    labels = integer_labels(path, _png_labels(path), 0, 40) - 1
    labels[labels == -1] = IGNORE_LABEL
    return labels


def _train_id_png(path):
    """Cityscapes' ``*_labelTrainIds.png``: 0..18, 255 = ignore."""
    labels = integer_labels(path, _png_labels(path), 0, 255)
    bad = labels[(labels >= 19) & (labels != IGNORE_LABEL)]
    if bad.size:
        fail_file(path, f"train id {bad[0]} is neither 0..18 nor 255")
    return labels


def _disparity_png(path):
    """Cityscapes' 16-bit disparity PNG: d = (p - 1) / 256 for p > 0, p = 0 invalid."""
    p = _pil_pixels(path)
    if p.ndim != 2 or p.dtype not in (np.uint16, np.int32):
        fail_file(path, f"disparity image of dtype {p.dtype} and shape {p.shape}; expected a 16-bit "
                        "single-channel PNG")
    return np.where(p > 0, (p.astype(np.float32) - 1) / 256, 0).astype(np.float32)


# layout -> {"image" or task: reader(path) -> decoded array}; a task the layout has no reader
# for is read by its descriptor's default reader (DenseTask.read).
DENSE_FORMATS = {
    "nyuv2_npy": {"image": _npy_image, "sem_seg": SemSegTask(num_classes=13).read},
    "nyud_mt": {"image": _rgb_file, "sem_seg": _nyud_png_label},
    "cityscapes": {"image": _rgb_file, "sem_seg": _train_id_png, "disparity": _disparity_png},
    "cityscapes_npy": {"image": _npy_image, "sem_seg": SemSegTask(num_classes=19).read},
}


# dense_format -> the layout in which `python -m sta_d2.data.synthetic` writes it
SYNTHETIC_LAYOUTS = {"nyuv2_npy": "nyuv2_13", "nyud_mt": "nyud_mt", "cityscapes": "cityscapes",
                     "cityscapes_npy": "cityscapes_npy"}


def missing_data_hint(folder, layout=None, extra=""):
    """How to fix a missing dataset ``folder``, to end its error: where sta_d2 reads datasets
    (``$DETECTRON2_DATASETS``, as it is set now) and, for a synthetic ``layout``, the command that
    writes such data there (with ``extra`` arguments), for a first run without the real data."""
    root = os.getenv("DETECTRON2_DATASETS")
    now = f"now {root}" if root else "unset, so ./datasets of the current directory"
    hint = (f"datasets are read under $DETECTRON2_DATASETS ({now}): set it to the folder that holds "
            f"{os.path.basename(os.path.normpath(folder))}/")
    if layout:
        hint += (f", or write synthetic data in this layout with: "
                 f"python -m sta_d2.data.synthetic {layout} --root {folder}{extra}")
    return f"{hint}; see datasets/README.md for every layout"


def dense_tasks_of(record):
    """The registered dense tasks a dataset dict has files for, in registration order."""
    return [t for t in dense_task_names() if f"{t}_file_name" in record]


def read_dense_sample(record):
    """``{"image": ..., <task>: ...}`` decoded from a dataset dict's files (module docstring).

    Raises naming the file when it does not decode or its size differs from the image's, and
    naming the image when its size differs from the dict's ``height`` and ``width`` (set when
    the dataset was loaded; the file changed since).
    """
    if record.get("dense_format") not in DENSE_FORMATS:
        raise ValueError(f"dataset dict of {record.get('file_name')} has dense_format "
                         f"{record.get('dense_format')!r}; expected one of {sorted(DENSE_FORMATS)}")
    readers = DENSE_FORMATS[record["dense_format"]]
    sample = {"image": readers["image"](record["file_name"])}
    size = sample["image"].shape[:2]
    if "height" in record and (record["height"], record["width"]) != size:
        fail_file(record["file_name"], f"image of size {size} but its dataset dict says "
                                       f"{(record['height'], record['width'])}")
    for task in dense_tasks_of(record):
        path = record[f"{task}_file_name"]
        read = readers.get(task) or build_dense_task(task).read
        sample[task] = read(path)
        if sample[task].shape[:2] != size:
            fail_file(path, f"{task} target of size {sample[task].shape[:2]} but its image "
                            f"{record['file_name']} is {size}")
    return sample


def _numbered_npy(directory):
    """{i: path} of the ``{i}.npy`` files in ``directory``."""
    files = {}
    for name in os.listdir(directory):
        if name.endswith(".npy"):
            if not re.fullmatch(r"\d+\.npy", name):
                fail_file(os.path.join(directory, name), "not named <index>.npy")
            files[int(name[:-4])] = os.path.join(directory, name)
    return files


def log_labelled_counts(source, records, tasks):
    """Log, per task, how many of ``records`` (loaded from ``source``) have its target, so that a
    partially labelled dataset states what it holds. Raises when no image has any target, since
    training would have nothing to learn from (a misnamed target directory, most likely)."""
    counts = {task: sum(f"{task}_file_name" in r for r in records) for task in tasks}
    if not any(dense_tasks_of(r) for r in records):
        raise FileNotFoundError(f"{source}: none of its {len(records)} images has a target of "
                                f"any task {list(tasks)}; {DATA_HINT}")
    logger.info(f"{source}: {len(records)} images, labelled for "
                + ", ".join(f"{task}: {n}" for task, n in counts.items()))


def load_numbered_npy(split_dir, targets, dense_format, *, partially_labelled=False):
    """Dataset dicts of an mtan-style split: ``split_dir/image/{i}.npy`` and, for each task,
    ``split_dir/<targets[task]>/{i}.npy``. A target without its image raises.

    By default every image needs every target. With ``partially_labelled``, an image whose
    target file of a task is missing (or whose split lacks the task's directory) has no label
    for that task: its dict has no ``<task>_file_name``; the counts per task are logged.
    """
    required = ("image",) if partially_labelled else ("image", *targets.values())
    for sub in required:
        if not os.path.isdir(os.path.join(split_dir, sub)):
            split = os.path.normpath(split_dir)
            extra = " --num-train-extra N" if os.path.basename(split) == "train_extra" else ""
            hint = missing_data_hint(os.path.dirname(split), SYNTHETIC_LAYOUTS.get(dense_format), extra)
            raise FileNotFoundError(f"directory {os.path.join(split_dir, sub)} does not exist; {hint}")
    images = _numbered_npy(os.path.join(split_dir, "image"))
    if not images:
        raise FileNotFoundError(f"no <index>.npy images in {os.path.join(split_dir, 'image')}")
    records = {i: {"image_id": str(i), "file_name": path, "dense_format": dense_format}
               for i, path in sorted(images.items())}
    for task, sub in targets.items():
        target_dir = os.path.join(split_dir, sub)
        found = _numbered_npy(target_dir) if os.path.isdir(target_dir) else {}
        missing = sorted(set(images) - set(found))
        if missing and not partially_labelled:
            raise FileNotFoundError(f"{os.path.join(target_dir, f'{missing[0]}.npy')} ({task} "
                                    f"of image {images[missing[0]]}) is missing")
        orphans = sorted(set(found) - set(images))
        if orphans:
            raise FileNotFoundError(f"image {os.path.join(split_dir, 'image', f'{orphans[0]}.npy')}"
                                    f" of {found[orphans[0]]} is missing")
        for i, path in found.items():
            records[i][f"{task}_file_name"] = path
    for record in records.values():
        try:
            shape = np.load(record["file_name"], mmap_mode="r").shape
        except (OSError, ValueError) as e:
            fail_file(record["file_name"], f"not a readable .npy file ({e})")
        if len(shape) != 3:
            fail_file(record["file_name"], f"image of shape {shape}; expected (H, W, 3)")
        record["height"], record["width"] = shape[:2]
    records = list(records.values())
    if partially_labelled:
        log_labelled_counts(split_dir, records, targets)
    return records


def register_dense_dataset(name, loader, *, tasks, classes=None, partially_labelled=False, **metadata):
    """Register ``name`` (dataset dicts from ``loader()``) with the dense metadata: evaluator_type
    "dense", dense_tasks (``tasks``, registered dense tasks its images may be labelled for),
    stuff_classes (``classes``, if given), ignore_label 255, partially_labelled (whether an image
    may lack some of the targets; the loader must then be one that allows it) and ``metadata``
    (e.g. depth_unit)."""
    unknown = [t for t in tasks if t not in dense_task_names()]
    if unknown:
        raise ValueError(f"dense dataset {name!r}: {unknown} are not registered dense tasks "
                         f"({dense_task_names()})")
    if classes is not None:
        metadata["stuff_classes"] = list(classes)
    DatasetCatalog.register(name, loader)
    MetadataCatalog.get(name).set(
        evaluator_type="dense",
        dense_tasks=tuple(tasks),
        ignore_label=IGNORE_LABEL,
        partially_labelled=partially_labelled,
        **metadata,
    )
