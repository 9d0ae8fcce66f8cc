"""Datasets and scores of the claim protocols (:mod:`sta_d2.reproduction.claims`): copies of a
generated NYUv2-13-layout dataset in which one task's labels are replaced by noise on a known list
of training images, and the detection scores of that list (AUC, precision@k)."""
import os
from typing import Sequence

import numpy as np

from ..data.synthetic import generate_nyuv2_13

# task -> its folder in the nyuv2_13 layout (the tasks whose labels can be replaced by noise)
TASK_DIRS = {"sem_seg": "label", "depth": "depth", "normal": "normal"}
SUBDIRS = ("image", "label", "depth", "normal")
CORRUPTED_FILE = "corrupted_{task}.txt"


def generate(root: str, num_train: int, num_val: int, image_size) -> str:
    """The clean dataset ``root/clean/nyuv2`` (written once; seed 0), its path."""
    path = os.path.join(root, "clean", "nyuv2")
    if not os.path.isdir(os.path.join(path, "val")):
        generate_nyuv2_13(path, num_train, num_val, image_size=tuple(image_size), seed=0)
    return path


def noise_like(label: np.ndarray, task: str, rng: np.random.Generator) -> np.ndarray:
    """Labels of ``task`` made of noise, invalid where ``label`` is invalid: depth uniform over
    the valid depths' range, unit normals uniform on the sphere, classes uniform."""
    if task == "depth":
        valid = label > 0
        low, high = (label[valid].min(), label[valid].max()) if valid.any() else (0.5, 8.0)
        return np.where(valid, rng.uniform(low, high, label.shape), 0).astype(np.float32)
    if task == "normal":
        valid = np.any(label != 0, axis=-1, keepdims=True)
        noise = rng.normal(size=label.shape)
        noise /= np.linalg.norm(noise, axis=-1, keepdims=True)
        return np.where(valid, noise, 0).astype(np.float32)
    if task == "sem_seg":
        return np.where(label >= 0, rng.integers(0, 13, label.shape), -1).astype(np.float32)
    raise ValueError(f"task {task!r}: no noise for it; one of {sorted(TASK_DIRS)}")


def corrupted_copy(clean: str, out: str, task: str, indices: Sequence[int], seed: int) -> str:
    """``out``: the dataset ``clean`` (nyuv2_13 layout) with ``task``'s training labels of the
    images ``indices`` replaced by noise (seeded by ``seed``), the other files linked to
    ``clean``'s; ``out/corrupted_<task>.txt`` lists ``indices``. Returns ``out``."""
    if task not in TASK_DIRS:
        raise ValueError(f"task {task!r}: labels of {sorted(TASK_DIRS)} can be corrupted")
    clean = os.path.abspath(clean)
    os.makedirs(os.path.join(out, "train"), exist_ok=True)
    _link(os.path.join(clean, "val"), os.path.join(out, "val"))
    for sub in SUBDIRS:
        if sub != TASK_DIRS[task]:
            _link(os.path.join(clean, "train", sub), os.path.join(out, "train", sub))
    target = os.path.join(out, "train", TASK_DIRS[task])
    os.makedirs(target, exist_ok=True)
    source = os.path.join(clean, "train", TASK_DIRS[task])
    chosen = set(int(i) for i in indices)
    rng = np.random.default_rng([seed, len(chosen)])
    for name in sorted(os.listdir(source), key=lambda n: int(n.split(".")[0])):
        path = os.path.join(target, name)
        if os.path.lexists(path):
            os.remove(path)
        if int(name.split(".")[0]) in chosen:
            np.save(path, noise_like(np.load(os.path.join(source, name)), task, rng))
        else:
            os.symlink(os.path.join(source, name), path)
    np.savetxt(os.path.join(out, CORRUPTED_FILE.format(task=task)), sorted(chosen), fmt="%d")
    return out


def _link(source: str, link: str) -> None:
    if not os.path.lexists(link):
        os.symlink(source, link)


def auc(scores: Sequence[float], positive: Sequence[bool]) -> float:
    """Area under the ROC curve of ``scores`` ranking the ``positive`` items first (ties count
    half): the probability that a positive item scores above a negative one; NaN without both."""
    scores, positive = np.asarray(scores, dtype=np.float64), np.asarray(positive, dtype=bool)
    pos, neg = scores[positive], scores[~positive]
    if not len(pos) or not len(neg):
        return float("nan")
    above = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(above / (len(pos) * len(neg)))


def precision_at_k(scores: Sequence[float], positive: Sequence[bool]) -> float:
    """The share of positive items among the k highest ``scores``, k = the number of positive
    items (ties broken by position); NaN without a positive item."""
    positive = np.asarray(positive, dtype=bool)
    k = int(positive.sum())
    if not k:
        return float("nan")
    top = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")[:k]
    return float(positive[top].mean())
