"""Partial labels on a fully labelled dataset: some tasks' labels removed per image, simulated
reproducibly or read from an availability file (to reproduce partially-labelled settings such as
those of JTR and MTPSL on full datasets)."""
import os
import zlib
from collections import defaultdict
from typing import Dict, List, Sequence

import numpy as np

from ..dense_tasks import dense_task_names
from ..specs import SEED, STAConfigError, ConfigKeys, Key, fail, list_of, number, one_of, text

# The dataset-dict fields of R-CNN's labels; det and mask share the annotations, so they are
# kept or dropped together.
RCNN_LABEL_FIELDS = {"det": "annotations", "mask": "annotations", "sem_seg": "sem_seg_file_name"}
MODES = ("one_per_image", "fraction", "file")
# The key of the (num_images, num_tasks) 0/1 tensor in the torch files the MTPSL and JTR papers
# publish for their "onelabel" and "randomlabels" NYUv2 settings.
LABELS_WEIGHTS_KEY = "labels_weights"

CONFIG_KEYS = ConfigKeys({
    # Simulated partial labels on a fully labelled training set: MODE "" (off), "one_per_image"
    # (each image keeps one task's labels) or "fraction" (task t keeps its labels on a share
    # FRACTIONS[t] of the images; tasks in the model's order); draws fixed by SEED and image id;
    # or "file": which task each image keeps is read from FILE (see read_availability).
    "STA.PARTIAL_LABELS.MODE": Key("", one_of(("",) + MODES)),
    "STA.PARTIAL_LABELS.FRACTIONS": Key([], list_of(number(0, 1))),
    "STA.PARTIAL_LABELS.SEED": Key(0, SEED),
    # An N x T 0/1 matrix, row i for the training image of dataset index i (its position in
    # DATASETS.TRAIN): .npy, .txt/.csv, or a torch file with a "labels_weights" tensor.
    "STA.PARTIAL_LABELS.FILE": Key("", text()),
    # The tasks of FILE's columns, in order (empty: the model's tasks); the model's tasks must be
    # among them (e.g. a sem_seg/depth model reads a sem_seg/depth/normal NYUv2 file).
    "STA.PARTIAL_LABELS.FILE_TASKS": Key([], list_of(text(nonempty=True), distinct=True)),
})


@CONFIG_KEYS.rule("STA.PARTIAL_LABELS.MODE", "STA.PARTIAL_LABELS.FILE")
def _file_fits_mode(cfg):
    mode, path = cfg.STA.PARTIAL_LABELS.MODE, cfg.STA.PARTIAL_LABELS.FILE
    if mode == "file" and not path:
        fail("STA.PARTIAL_LABELS.FILE", path, "cfg.STA.PARTIAL_LABELS.MODE = 'file' needs the availability file")
    if mode != "file" and path:
        fail("STA.PARTIAL_LABELS.FILE", path, f"only read with cfg.STA.PARTIAL_LABELS.MODE = 'file', not {mode!r}")


@CONFIG_KEYS.rule("STA.PARTIAL_LABELS.MODE", "STA.PARTIAL_LABELS.FRACTIONS", "STA.TASKS")
def _fractions_fit_mode(cfg):
    mode, fractions = cfg.STA.PARTIAL_LABELS.MODE, list(cfg.STA.PARTIAL_LABELS.FRACTIONS)
    tasks = list(cfg.STA.TASKS)
    key, setting = "STA.PARTIAL_LABELS.FRACTIONS", f"cfg.STA.PARTIAL_LABELS.MODE = {mode!r}"
    if mode != "fraction" and fractions:
        fail(key, fractions, f"only used with the mode 'fraction', not {setting}")
    if mode == "fraction" and not fractions:
        fail(key, fractions, f"{setting} needs one fraction per task, in the model's order")
    if mode == "fraction" and tasks and len(fractions) != len(tasks):
        fail(key, fractions, f"{setting} needs one fraction per task of cfg.STA.TASKS = {tasks}")


def label_field(task: str) -> str:
    """The dataset-dict field that holds ``task``'s labels: R-CNN's, or ``"<task>_file_name"`` for
    a dense task."""
    if task in RCNN_LABEL_FIELDS:
        return RCNN_LABEL_FIELDS[task]
    if task in dense_task_names():
        return f"{task}_file_name"
    raise STAConfigError(f"cfg.STA.PARTIAL_LABELS: no known label field for task {task!r}")


def simulate_partial_labels(dataset_dicts: List[dict], tasks: Sequence[str], mode: str,
                            fractions: Sequence[float], seed: int) -> List[dict]:
    """Shallow copies of ``dataset_dicts`` without the label fields of the tasks an image loses.

    ``mode`` "one_per_image": each image keeps the labels of one task (one label field) drawn
    uniformly; "fraction": the labels of task t are kept on each image with probability
    ``fractions[t]`` (tasks in ``tasks`` order), independently per task. The draws of an image
    depend only on ``seed`` and its ``image_id`` (or ``file_name``), so every process and every
    run drops the same labels whatever the dataset order.
    """
    groups: Dict[str, List[int]] = defaultdict(list)  # label field -> indices of its tasks
    for i, task in enumerate(tasks):
        groups[label_field(task)].append(i)
    fields = list(groups)
    if mode == "fraction":
        if len(fractions) != len(tasks) or not all(0.0 <= f <= 1.0 for f in fractions):
            raise STAConfigError(
                f"cfg.STA.PARTIAL_LABELS.FRACTIONS = {list(fractions)}: give one fraction in [0, 1] "
                f"per task, in the model's order {list(tasks)}"
            )
        for field, members in groups.items():
            if len({fractions[i] for i in members}) > 1:
                raise STAConfigError(
                    f"cfg.STA.PARTIAL_LABELS.FRACTIONS: tasks {[tasks[i] for i in members]} share "
                    f"their labels ({field}) and need the same fraction"
                )
    elif mode not in MODES[:2]:
        raise STAConfigError(f"cfg.STA.PARTIAL_LABELS.MODE = {mode!r}: simulation is 'one_per_image' or "
                             "'fraction'")

    out = []
    for record in dataset_dicts:
        key = str(record.get("image_id", record.get("file_name")))
        rng = np.random.default_rng([seed, zlib.crc32(key.encode())])
        if mode == "one_per_image":
            kept = {fields[rng.integers(len(fields))]}
        else:
            draws = rng.random(len(fields))
            kept = {f for f, u in zip(fields, draws) if u < fractions[groups[f][0]]}
        out.append({k: v for k, v in record.items() if k not in set(fields) - kept})
    return out


def read_availability(path: str, num_images: int, tasks: Sequence[str], file_tasks: Sequence[str] = ()) -> np.ndarray:
    """The bool (num_images, len(tasks)) matrix of an availability file: which of ``tasks`` each
    training image (by dataset index) keeps labels for.

    The file holds an N x T 0/1 matrix, one row per image in dataset order and one column per task
    of ``file_tasks`` (default: ``tasks``): a ``.npy`` array, a ``.txt``/``.csv`` of numbers, or a
    torch file (``.pt``, ``.pth``) with a ``labels_weights`` tensor (or the tensor itself), the
    form in which the MTPSL and JTR papers publish their "onelabel" and "randomlabels" settings.
    Errors name the file."""
    where = f"cfg.STA.PARTIAL_LABELS.FILE = {path!r}"
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{where}: the availability file does not exist")
    try:
        if path.endswith((".pt", ".pth")):
            import torch

            loaded = torch.load(path, map_location="cpu", weights_only=True)
            matrix = loaded[LABELS_WEIGHTS_KEY] if isinstance(loaded, dict) else loaded
            matrix = np.asarray(matrix.numpy() if hasattr(matrix, "numpy") else matrix)
        elif path.endswith(".npy"):
            matrix = np.load(path)
        else:
            matrix = np.loadtxt(path, delimiter="," if path.endswith(".csv") else None, ndmin=2)
    except (KeyError, ValueError, OSError, RuntimeError) as e:
        raise ValueError(f"{where}: not a readable availability matrix ({type(e).__name__}: {e})") from e
    columns = list(file_tasks or tasks)
    if matrix.ndim != 2 or matrix.shape != (num_images, len(columns)):
        raise ValueError(f"{where}: a matrix of shape {matrix.shape}, expected ({num_images}, {len(columns)}): "
                         f"one row per training image of DATASETS.TRAIN, one column per task of {columns}")
    if not np.isin(matrix, (0, 1)).all():
        raise ValueError(f"{where}: holds values other than 0 and 1")
    missing = [t for t in tasks if t not in columns]
    if missing:
        fail("STA.PARTIAL_LABELS.FILE_TASKS", list(file_tasks),
             f"the file's columns {columns} lack the model's task(s) {missing}")
    return matrix[:, [columns.index(t) for t in tasks]].astype(bool)


def apply_availability(dataset_dicts: List[dict], tasks: Sequence[str], available: np.ndarray,
                       index_key: str) -> List[dict]:
    """Shallow copies of ``dataset_dicts`` without the label fields of the tasks ``available``
    (rows by the dicts' ``index_key``) removes. Tasks that share a label field must agree."""
    fields: Dict[str, List[int]] = defaultdict(list)
    for i, task in enumerate(tasks):
        fields[label_field(task)].append(i)
    out = []
    for record in dataset_dicts:
        row = available[record[index_key]]
        dropped = set()
        for field, members in fields.items():
            kept = {bool(row[i]) for i in members}
            if len(kept) > 1:
                raise ValueError(f"availability of image {record[index_key]} ({record.get('file_name')}): "
                                 f"tasks {[tasks[i] for i in members]} share their labels ({field}) and "
                                 "must be kept or dropped together")
            if not kept.pop():
                dropped.add(field)
        out.append({k: v for k, v in record.items() if k not in dropped})
    return out
