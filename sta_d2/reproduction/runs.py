"""The training runs of a paper table: configs, seeds, output folders, commands, and the
``--smoke`` settings that shrink them to a CPU-sized check on generated data."""
import json
import math
import os
import sys
from dataclasses import dataclass
from typing import Dict, List, Sequence

from .paper_tables import TABLES

SMOKE_STEPS = 4  # optimizer steps of an FT run in a smoke run; other rows keep their ratio to FT

# Overrides of every smoke run, then per model family (read from the loaded config).
SMOKE_COMMON = [
    "MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", "", "SOLVER.IMS_PER_BATCH", "2", "SOLVER.STEPS", "()",
    "SOLVER.WARMUP_ITERS", "0", "SOLVER.CHECKPOINT_PERIOD", "100000", "TEST.EVAL_PERIOD", "0",
    "DATALOADER.NUM_WORKERS", "0", "STA.WEIGHTING.DWA.WINDOW", "1",
]
SMOKE_SEGNET = ["MODEL.SEGNET.WIDTHS", "[8, 16]", "MODEL.SEGNET.NUM_CONVS", "[1, 1]"]
SMOKE_RESNET = ["MODEL.RESNETS.DEPTH", "18", "MODEL.RESNETS.RES2_OUT_CHANNELS", "64"]
SMOKE_DENSE_RESNET = SMOKE_RESNET + ["MODEL.DENSE.HEAD_CHANNELS", "32", "INPUT.DENSE.SIZE", "[32, 64]"]
SMOKE_RCNN = SMOKE_RESNET + [
    "MODEL.FPN.OUT_CHANNELS", "32", "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", "32",
    "MODEL.RPN.BATCH_SIZE_PER_IMAGE", "64", "MODEL.RPN.POST_NMS_TOPK_TRAIN", "50",
    "MODEL.ROI_BOX_HEAD.FC_DIM", "64", "MODEL.ROI_MASK_HEAD.CONV_DIM", "16",
    "INPUT.MIN_SIZE_TRAIN", "(64,)", "INPUT.MAX_SIZE_TRAIN", "128", "INPUT.MIN_SIZE_TEST", "64",
    "INPUT.MAX_SIZE_TEST", "128",
]
# COCO is replaced by the generated shapes dataset (COCO layout, 3 categories).
SMOKE_COCO = ["DATASETS.TRAIN", "('shapes_train',)", "DATASETS.TEST", "('shapes_val',)",
              "MODEL.ROI_HEADS.NUM_CLASSES", "3"]
# Per configs directory: its Full Task config (the reference of the step ratios) and the generated
# layout a smoke run trains on (generator, folder under the datasets root, image size).
SMOKE_DATA = {
    "NYUv2-13": ("segnet_full.yaml", "nyuv2_13", "nyuv2", (32, 48)),
    "NYUv2-40": ("deeplab_R_50_full.yaml", "nyud_mt", "NYUD_MT", (32, 48)),
    "Cityscapes-Dense": ("deeplab_R_50_full.yaml", "cityscapes", "cityscapes", (64, 128)),
    "Cityscapes": ("mask_rcnn_R_50_FPN_full.yaml", "cityscapes", "cityscapes", (64, 128)),
    "COCO-InstanceSegmentation": ("mask_rcnn_R_50_FPN_1x_full.yaml", "coco", "shapes", (64, 64)),
}


@dataclass(frozen=True)
class Run:
    config: str  # relative to the configs directory
    seed: int
    output_dir: str


def table_configs(number: int) -> List[str]:
    """The configs a table needs, baselines first, each once."""
    configs = []
    for section in TABLES[number].sections:
        for config in (*section.baseline_configs, *(row.config for row in section.rows)):
            if config not in configs:
                configs.append(config)
    return configs


def table_runs(number: int, seeds: Sequence[int], output: str) -> List[Run]:
    return [Run(config, seed, os.path.join(output, config[: -len(".yaml")], f"seed{seed}"))
            for config in table_configs(number) for seed in seeds]


def smoke_overrides(config_path: str, configs_root: str) -> List[str]:
    """Overrides that shrink ``config_path``'s run: tiny models and data, and SMOKE_STEPS steps
    for an FT run, other runs in the same ratio to FT's steps as in the full schedule."""
    from ..config import load_config

    cfg = load_config(os.path.join(configs_root, config_path))
    directory = os.path.dirname(config_path)
    reference = load_config(os.path.join(configs_root, directory, SMOKE_DATA[directory][0])).SOLVER.MAX_ITER
    steps = max(1, round(SMOKE_STEPS * cfg.SOLVER.MAX_ITER / reference))
    overrides = SMOKE_COMMON + ["SOLVER.MAX_ITER", str(steps)]
    if cfg.MODEL.META_ARCHITECTURE != "DenseMultiTaskNet":
        overrides += SMOKE_RCNN + (SMOKE_COCO if directory == "COCO-InstanceSegmentation" else [])
    elif cfg.MODEL.BACKBONE.NAME == "build_segnet_backbone":
        overrides += SMOKE_SEGNET
    else:
        overrides += SMOKE_DENSE_RESNET
    return overrides


def generate_smoke_data(number: int, datasets_root: str) -> None:
    """Write the generated datasets a table's smoke runs read (once per layout)."""
    from ..data.synthetic import GENERATORS

    for directory in sorted({os.path.dirname(c) for c in table_configs(number)}):
        _, layout, folder, size = SMOKE_DATA[directory]
        root = os.path.join(datasets_root, folder)
        if not os.path.isdir(root):
            GENERATORS[layout][0](root, 4, 2, seed=0, image_size=size)


def train_command(run: Run, configs_root: str, launch_args: Sequence[str], opts: Sequence[str]) -> List[str]:
    """The ``tools/train_net.py`` command of ``run`` (its seed drives the data order, the
    initialisation and the allocation)."""
    tool = os.path.join(os.path.dirname(os.path.abspath(configs_root)), "tools", "train_net.py")
    return [sys.executable, tool, "--config-file", os.path.join(configs_root, run.config), *launch_args,
            *opts, "SEED", str(run.seed), "STA.SEED", str(run.seed), "OUTPUT_DIR", run.output_dir]


def final_results(output_dir: str, metrics: Sequence[str]) -> Dict[str, float]:
    """The last evaluated value of each "task/metric" in ``output_dir/metrics.json`` (where
    detectron2's evaluation hook writes them); a metric never evaluated is NaN."""
    path = os.path.join(output_dir, "metrics.json")
    values = dict.fromkeys(metrics, math.nan)
    if os.path.isfile(path):
        with open(path) as f:
            for line in f:
                row = json.loads(line)
                values.update({m: row[m] for m in metrics if m in row})
    return values


def is_done(output_dir: str) -> bool:
    """Whether the run finished (its final model is saved)."""
    return os.path.isfile(os.path.join(output_dir, "model_final.pth"))
