"""Claim protocols: does our ILTP, IAL or JTR deliver its paper's headline claim, against the
baseline that claim is about? Every run is a small SegNet (configs/Demo/Base-nyuv2_segnet.yaml)
trained in this process on generated NYUv2-13-layout data, seeded, on the CPU.

- ILTP (arXiv 2106.06129): with a fraction of the depth labels replaced by noise, validation
  depth error vs equal and uncertainty weighting, and the detection of the corrupted images by
  ILTP's exported s (AUC, precision@k) vs the per-image depth error of the equal-weight model.
- IAL (arXiv 2412.19547): sem_seg (primary) with depth (a helpful auxiliary) and normals made of
  noise (a useless auxiliary): the primary's metrics vs equal and uncertainty weighting.
- JTR (arXiv 2404.01976): one label per image, and random labels, sem_seg + depth: each task vs
  equal weighting on the same labels and vs equal weighting on full labels (the upper bound).
"""
import json
import math
import os
from dataclasses import dataclass
from typing import Callable, Dict, List, Sequence, Tuple

import numpy as np

from . import claim_data
from .runs import final_results

BASE_CONFIG = os.path.join("Demo", "Base-nyuv2_segnet.yaml")
EW, UW = "EqualWeighting", "UncertaintyWeighting"
ILTP_NAME, IAL_NAME, JTR_NAME = "InstanceLevelTaskParameters", "ImpartialAuxiliaryLearning", "JointTaskRegularization"
# (column name, metric key, higher is better)
SEG = [("sem_seg mIoU", "sem_seg/mIoU", True), ("sem_seg pixAcc", "sem_seg/pixAcc", True)]
DEPTH = [("depth abs_err", "depth/abs_err", False), ("depth rel_err", "depth/rel_err", False)]


@dataclass(frozen=True)
class Size:
    """How big a protocol's runs are."""

    num_train: int
    num_val: int
    image_size: Tuple[int, int]
    steps: int
    batch: int
    segnet_widths: Tuple[int, ...]
    segnet_convs: Tuple[int, ...]
    fractions: Tuple[float, ...]  # ILTP: shares of corrupted depth labels

    def overrides(self) -> List[str]:
        decay = max(1, int(0.8 * self.steps))
        return ["SOLVER.MAX_ITER", str(self.steps), "SOLVER.STEPS", f"({decay},)",
                "SOLVER.WARMUP_ITERS", str(min(20, self.steps // 10)), "SOLVER.IMS_PER_BATCH", str(self.batch),
                "MODEL.SEGNET.WIDTHS", str(list(self.segnet_widths)),
                "MODEL.SEGNET.NUM_CONVS", str(list(self.segnet_convs))]


FULL = Size(120, 40, (48, 64), 200, 8, (16, 32, 64), (1, 2, 2), (0.1, 0.3))
SMOKE = Size(16, 4, (32, 48), 3, 4, (8, 16), (1, 1), (0.25,))


@dataclass(frozen=True)
class Row:
    """One line of a protocol's table: a setting, a method and its config overrides."""

    setting: str
    method: str
    opts: Tuple[str, ...]
    data: str  # key of the protocol's datasets


def register(nyuv2: str) -> Tuple[str, str]:
    """Train and val dataset names of the nyuv2_13-layout folder ``nyuv2`` (registered once)."""
    from detectron2.data import DatasetCatalog

    from ..data.datasets import register_nyuv2_13

    names = tuple(f"claims:{os.path.abspath(nyuv2)}:{split}" for split in ("train", "val"))
    for name, split in zip(names, ("train", "val")):
        if name not in DatasetCatalog:
            register_nyuv2_13(name, os.path.join(nyuv2, split))
    return names


def train(configs_root: str, nyuv2: str, opts: Sequence[str], output_dir: str, seed: int):
    """Train the demo SegNet on ``nyuv2`` with ``opts``, seeded by ``seed`` (data order, weights,
    allocation), one process, no loader worker; evaluate on its val split. The trainer."""
    from detectron2.utils.env import seed_all_rng

    from ..config import load_config
    from ..engine.trainer import STATrainer

    train_name, val_name = register(nyuv2)
    cfg = load_config(os.path.join(configs_root, BASE_CONFIG), [
        *opts, "DATASETS.TRAIN", f"('{train_name}',)", "DATASETS.TEST", f"('{val_name}',)",
        "DATALOADER.NUM_WORKERS", "0", "SEED", str(seed), "STA.SEED", str(seed), "OUTPUT_DIR", output_dir])
    os.makedirs(output_dir, exist_ok=True)
    seed_all_rng(seed)
    trainer = STATrainer(cfg)
    trainer.resume_or_load(resume=False)
    trainer.train()
    return trainer


def image_errors(trainer, task: str = "depth") -> Dict[int, float]:
    """Per training image (by its file's number): the mean absolute error of the trained model's
    ``task`` prediction against the image's training labels, over its valid pixels (the ranking a
    user gets from any trained model, ILTP's detection baseline)."""
    import torch

    errors = {}
    model = trainer.model
    model.eval()
    with torch.no_grad():
        for [inputs] in trainer.build_test_loader(trainer.cfg, trainer.cfg.DATASETS.TRAIN[0]):
            prediction = model([inputs])[0][task].reshape(-1)
            label = inputs[task].reshape(-1)
            valid = label > 0
            errors[image_number(inputs["file_name"])] = float((prediction[valid] - label[valid]).abs().mean())
    return errors


def image_number(file_name: str) -> int:
    return int(os.path.basename(file_name).split(".")[0])


def exported_scores(output_dir: str, task: str) -> Dict[int, float]:
    """ILTP's exported s of ``task`` per training image (by its file's number)."""
    import csv

    from ..weighting.iltp import InstanceLevelTaskParameters

    with open(os.path.join(output_dir, InstanceLevelTaskParameters.EXPORT_FILE)) as f:
        return {image_number(r["file_name"]): float(r[f"log_var/{task}"]) for r in csv.DictReader(f)}


def detection(scores: Dict[int, float], corrupted: Sequence[int]) -> Dict[str, float]:
    images = sorted(scores)
    positive = [i in set(corrupted) for i in images]
    values = [scores[i] for i in images]
    return {"AUC": claim_data.auc(values, positive), "P@k": claim_data.precision_at_k(values, positive)}


# --- the three protocols: datasets, rows, and what each run reports ---------------------------

ILTP_METHODS = [("equal", EW, ()), ("uncertainty", UW, ()), ("ILTP", ILTP_NAME, ()),
                ("ILTP, per-task normalised", ILTP_NAME, ("STA.WEIGHTING.ILTP.TASK_NORMALISED", "True"))]


def iltp_rows(size: Size) -> List[Row]:
    return [Row(f"{f:.0%} of depth labels noise", name, ("STA.WEIGHTING.NAME", method, *opts), f"depth{f:g}")
            for f in size.fractions for name, method, opts in ILTP_METHODS]


def iltp_data(root: str, clean: str, size: Size, seed: int) -> Dict[str, Tuple[str, List[int]]]:
    """Per fraction: the dataset with that share of depth labels noise (images drawn by ``seed``,
    nested across fractions) and the corrupted list."""
    order = np.random.default_rng(seed).permutation(size.num_train)
    out = {}
    for f in size.fractions:
        corrupted = sorted(int(i) for i in order[: round(f * size.num_train)])
        folder = os.path.join(root, f"depth{f:g}_seed{seed}", "nyuv2")
        out[f"depth{f:g}"] = (claim_data.corrupted_copy(clean, folder, "depth", corrupted, seed), corrupted)
    return out


def iltp_measure(row: Row, trainer, output_dir: str, corrupted: List[int]) -> Dict[str, float]:
    """Detection of the corrupted images: by ILTP's s (its runs), by the per-image depth error
    (the equal-weight runs); nothing for other runs or when nothing is corrupted."""
    if not corrupted:
        return {}
    if row.method == "equal":
        return {f"per-image error {k}": v for k, v in detection(image_errors(trainer), corrupted).items()}
    if row.method.startswith("ILTP"):
        return {f"s {k}": v for k, v in detection(exported_scores(output_dir, "depth"), corrupted).items()}
    return {}


IAL_TASKS = ("MODEL.DENSE.TASKS", "['sem_seg', 'depth', 'normal']")
IAL_SETTING = "sem_seg primary; depth helpful; normals noise"


def ial_rows(size: Size) -> List[Row]:
    return [Row(IAL_SETTING, name, (*IAL_TASKS, "STA.WEIGHTING.NAME", method, *opts), "noise_normals")
            for name, method, opts in [("equal", EW, ()), ("uncertainty", UW, ()),
                                       ("IAL", IAL_NAME, ("STA.WEIGHTING.IAL.PRIMARY", "sem_seg"))]]


def ial_data(root: str, clean: str, size: Size, seed: int):
    folder = os.path.join(root, "normal_noise", "nyuv2")
    return {"noise_normals": (claim_data.corrupted_copy(clean, folder, "normal", range(size.num_train), 0),
                              list(range(size.num_train)))}


JTR_SETTINGS = [("one label per image", ("STA.PARTIAL_LABELS.MODE", "one_per_image")),
                ("random labels (each kept w.p. 0.5)",
                 ("STA.PARTIAL_LABELS.MODE", "fraction", "STA.PARTIAL_LABELS.FRACTIONS", "[0.5, 0.5]"))]


def jtr_rows(size: Size) -> List[Row]:
    rows = [Row("full labels (upper bound)", "equal", ("STA.WEIGHTING.NAME", EW), "clean")]
    for setting, labels in JTR_SETTINGS:
        rows += [Row(setting, name, (*labels, "STA.WEIGHTING.NAME", method), "clean")
                 for name, method in [("equal", EW), ("JTR", JTR_NAME)]]
    return rows


def clean_data(root: str, clean: str, size: Size, seed: int):
    return {"clean": (clean, [])}


@dataclass(frozen=True)
class Protocol:
    rows: Callable[[Size], List[Row]]
    data: Callable
    metrics: List[Tuple[str, str, bool]]
    measure: Callable = None  # (row, trainer, run folder, corrupted list) -> more values of the run


PROTOCOLS = {
    "iltp": Protocol(iltp_rows, iltp_data, DEPTH + SEG[:1], iltp_measure),
    "ial": Protocol(ial_rows, ial_data, SEG + DEPTH[:1]),
    "jtr": Protocol(jtr_rows, clean_data, SEG[:1] + DEPTH[:1]),
}


def run(method: str, configs_root: str, output: str, size: Size, seeds: Sequence[int], log=print) -> Dict:
    """Every run of protocol ``method`` for ``seeds`` (a run whose results.json exists is read,
    not run again); the per-run values, also written to OUTPUT/results.json."""
    protocol = PROTOCOLS[method]
    root = os.path.join(output, "datasets")
    clean = claim_data.generate(root, size.num_train, size.num_val, size.image_size)
    results = []
    for seed in seeds:
        data = protocol.data(root, clean, size, seed)
        for row in protocol.rows(size):
            nyuv2, corrupted = data[row.data]
            run_dir = os.path.join(output, "runs", _slug(row.setting), _slug(row.method), f"seed{seed}")
            done = os.path.join(run_dir, "results.json")
            if os.path.isfile(done):
                with open(done) as f:
                    values = json.load(f)
            else:
                log(f"[claims] {method}: {row.setting} / {row.method}, seed {seed} -> {run_dir}")
                opts = [*size.overrides(), "STA.POLICY", "full", *row.opts,
                        *(("STA.PARTIAL_LABELS.SEED", str(seed)) if "STA.PARTIAL_LABELS.MODE" in row.opts else ())]
                trainer = train(configs_root, nyuv2, opts, run_dir, seed)
                values = final_results(run_dir, [key for _, key, _ in protocol.metrics])
                if protocol.measure:
                    values.update(protocol.measure(row, trainer, run_dir, corrupted))
                with open(done, "w") as f:
                    json.dump(values, f)
            results.append({"setting": row.setting, "method": row.method, "seed": seed, **values})
    with open(os.path.join(output, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    return results


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in text).strip("_").lower()


def summary(method: str, results: List[Dict], size: Size) -> List[Tuple[str, str, Dict[str, Tuple[float, float, int]]]]:
    """Per row (setting, method): {column: (mean, std over seeds, number of seeds)}; std is the
    sample standard deviation (NaN with one seed)."""
    protocol = PROTOCOLS[method]
    rows = []
    for row in protocol.rows(size):
        runs = [r for r in results if (r["setting"], r["method"]) == (row.setting, row.method)]
        columns = {}
        for name, key, _ in protocol.metrics:
            columns[name] = _spread([r[key] for r in runs])
        extra = {k for r in runs for k in r} - {"setting", "method", "seed"} - {k for _, k, _ in protocol.metrics}
        for key in sorted(extra):
            columns[key] = _spread([r.get(key, math.nan) for r in runs])
        rows.append((row.setting, row.method, columns))
    return rows


def _spread(values: Sequence[float]) -> Tuple[float, float, int]:
    values = np.asarray(values, dtype=np.float64)
    std = float(values.std(ddof=1)) if len(values) > 1 else math.nan
    return float(values.mean()), std, len(values)


def markdown(method: str, results: List[Dict], size: Size, provenance: str) -> str:
    """The protocol's table (mean ± std over seeds; "—" where a value does not apply)."""
    rows = summary(method, results, size)
    columns = list(dict.fromkeys(c for _, _, cols in rows for c in cols))
    arrows = {name: (" ↑" if up else " ↓") for name, _, up in PROTOCOLS[method].metrics}
    arrows.update({c: " ↑" for c in columns if "AUC" in c or "P@k" in c})
    lines = ["| setting | method | " + " | ".join(c + arrows.get(c, "") for c in columns) + " |",
             "|---|---|" + "---|" * len(columns)]
    for setting, name, cols in rows:
        cells = [_cell(*cols[c][:2]) if c in cols else "—" for c in columns]
        lines.append(f"| {setting} | {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n\n" + provenance + "\n"


def _cell(mean: float, std: float) -> str:
    if math.isnan(mean):
        return "—"
    return f"{mean:.3f}" if math.isnan(std) else f"{mean:.3f} ± {std:.3f}"
