"""Simulated partial labels: a fully labelled dataset with some tasks' labels removed per image,
reproducibly (to reproduce partially-labelled settings such as JTR's on full datasets)."""
import zlib
from collections import defaultdict
from typing import Dict, List, Sequence

import numpy as np

from ..dense_tasks import dense_task_names
from ..specs import SEED, STAConfigError, ConfigKeys, Key, fail, list_of, number, one_of

# The dataset-dict fields of R-CNN's labels; det and mask share the annotations, so they are
# kept or dropped together.
RCNN_LABEL_FIELDS = {"det": "annotations", "mask": "annotations", "sem_seg": "sem_seg_file_name"}
MODES = ("one_per_image", "fraction")

CONFIG_KEYS = ConfigKeys({
    # Simulated partial labels on a fully labelled training set: MODE "" (off), "one_per_image"
    # (each image keeps one task's labels) or "fraction" (task t keeps its labels on a share
    # FRACTIONS[t] of the images; tasks in the model's order); draws fixed by SEED and image id.
    "STA.PARTIAL_LABELS.MODE": Key("", one_of(("",) + MODES)),
    "STA.PARTIAL_LABELS.FRACTIONS": Key([], list_of(number(0, 1))),
    "STA.PARTIAL_LABELS.SEED": Key(0, SEED),
})


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
    elif mode not in MODES:
        raise STAConfigError(f"cfg.STA.PARTIAL_LABELS.MODE = {mode!r}: choose '', {', '.join(MODES)}")

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
