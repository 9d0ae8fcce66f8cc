"""Simulated partial labels: a fully labelled dataset with some tasks' labels removed per image,
reproducibly (to reproduce partially-labelled settings such as JTR's on full datasets)."""
import zlib
from collections import defaultdict
from typing import Dict, List, Sequence

import numpy as np

from ..config import STAConfigError

# The dataset-dict field that holds each task's labels. R-CNN's det and mask share the
# annotations, so they are kept or dropped together.
LABEL_FIELDS = {
    "det": "annotations",
    "mask": "annotations",
    "sem_seg": "sem_seg_file_name",
    "depth": "depth_file_name",
    "normal": "normal_file_name",
    "disparity": "disparity_file_name",
}
MODES = ("one_per_image", "fraction")


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
        if task not in LABEL_FIELDS:
            raise STAConfigError(f"cfg.STA.PARTIAL_LABELS: no known label field for task {task!r}")
        groups[LABEL_FIELDS[task]].append(i)
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
