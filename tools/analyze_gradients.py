#!/usr/bin/env python
"""Angles between gradients on the shared parameters under FT, STA and ISTA (the paper's
Figures 1 and 2), on training batches of a config, at the weights of MODEL.WEIGHTS.

    DETECTRON2_DATASETS=output/demo_dense/datasets tools/analyze_gradients.py \
        --config-file configs/Demo/nyuv2_segnet_ista.yaml --num-batches 20 \
        --output output/demo_dense/gradient_angles MODEL.WEIGHTS output/demo_dense/ista/model_final.pth

Writes ``gradient_angles.json`` (the angles of every batch, their means, the allocations; see
:func:`sta_d2.analysis.gradient_angles`) and ``gradient_angles.png`` (their histograms) to
``--output``. STA and ISTA use cfg.STA.TASKS_PER_IMAGE and COVER_ALL_TASKS and draw from
cfg.STA.SEED whatever cfg.STA.POLICY is; batches come from the training loader (seed cfg.SEED).
One process. The config, its datasets and weights are checked first (:func:`sta_d2.check_run`).
"""
import json
import logging
import os
import sys

from detectron2.engine import default_argument_parser
from detectron2.utils.env import seed_all_rng
from tqdm import tqdm

from sta_d2 import STATrainer, check_run, load_config, setup_logging
from sta_d2.allocation import allocation_generator
from sta_d2.analysis import gradient_angles
from sta_d2.reporting.gradient_angle_plots import plot_gradient_angles
from sta_d2.data.train_loader import training_seed
from sta_d2.engine import AtomicCheckpointer


def setup(args):
    """The checked config; the terminal set up as tools/train_net.py's (no log file)."""
    cfg = load_config(args.config_file, args.opts)
    cfg.freeze()
    check_run(cfg)
    setup_logging()
    return cfg


def main(args, cfg):
    logger = logging.getLogger("sta_d2")
    model = STATrainer.build_model(cfg)
    AtomicCheckpointer(model).resume_or_load(cfg.MODEL.WEIGHTS, resume=False)
    seed = training_seed(cfg)
    seed_all_rng(seed)  # anchor and proposal sampling of R-CNN losses
    batches = iter(STATrainer.build_train_loader(cfg, seed=seed))
    result = gradient_angles(
        model,
        tqdm((next(batches) for _ in range(args.num_batches)), total=args.num_batches, desc="gradient angles",
             unit="batch"),
        cfg.STA.TASKS_PER_IMAGE,
        allocation_generator(cfg.STA.SEED, 0),
        cfg.STA.COVER_ALL_TASKS,
    )
    os.makedirs(args.output, exist_ok=True)
    json_path, png_path = (os.path.join(args.output, f"gradient_angles.{ext}") for ext in ("json", "png"))
    with open(json_path, "w") as f:
        json.dump({"config_file": args.config_file, "weights": cfg.MODEL.WEIGHTS, **result}, f, indent=1)
    plot_gradient_angles(result, png_path)
    for kind, pairs in result["mean"].items():
        logger.info(f"{kind}: mean angles (degrees) {pairs}, skipped {result['skipped'][kind]}")
    logger.info(f"Wrote {json_path} and {png_path}")


if __name__ == "__main__":
    parser = default_argument_parser()
    parser.add_argument("--num-batches", type=int, default=20, help="training batches to measure")
    parser.add_argument("--output", default="output/gradient_angles", help="directory of the JSON and PNG")
    args = parser.parse_args()
    if args.num_batches < 1:
        parser.error(f"--num-batches {args.num_batches}: must be at least 1")
    try:
        cfg = setup(args)
    except (ValueError, FileNotFoundError) as e:  # a config, dataset or weights mistake
        sys.exit(f"{parser.prog}: error: {e}")
    main(args, cfg)
