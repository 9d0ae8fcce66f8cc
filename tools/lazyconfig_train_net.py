#!/usr/bin/env python
"""Train or evaluate a detectron2 LazyConfig with task allocation, with detectron2's command line.

    tools/lazyconfig_train_net.py --config-file configs/LazyConfigs/Demo/shapes_mask_rcnn_ista.py
    tools/lazyconfig_train_net.py --config-file ... --resume
    tools/lazyconfig_train_net.py --config-file ... --eval-only train.init_checkpoint=output/model_final.pth
    tools/lazyconfig_train_net.py --config-file ... --num-gpus 2 train.device=cpu   # 2 CPU processes, gloo
    tools/lazyconfig_train_net.py --config-file ... sta.POLICY=sta train.max_iter=1000

The config's model is made allocating with :func:`sta_d2.lazy.allocating_model`; ``sta`` holds
sta_d2's keys (docs/plugging-in.md). Training is :func:`sta_d2.lazy.train`: sta_d2's training
loop, resumable exactly, stopping on a non-finite loss. As with tools/train_net.py, --num-gpus
without CUDA is the number of CPU processes (sta_d2.engine.launch).
"""
import logging

from detectron2.config import LazyConfig
from detectron2.engine import default_argument_parser, default_setup
from detectron2.utils import comm

from sta_d2 import setup_logging
from sta_d2.engine import launch
from sta_d2.lazy import evaluate_checkpoint, train

logger = logging.getLogger("sta_d2")


def main(args):
    cfg = LazyConfig.apply_overrides(LazyConfig.load(args.config_file), args.opts)
    setup_logging(cfg.train.output_dir)
    default_setup(cfg, args)
    if args.eval_only:
        return evaluate_checkpoint(cfg, resume=args.resume)
    train(cfg, resume=args.resume)
    if comm.is_main_process():
        logger.info(f"Outputs in {cfg.train.output_dir}")


if __name__ == "__main__":
    args = default_argument_parser().parse_args()
    launch(main, args.num_gpus, num_machines=args.num_machines, machine_rank=args.machine_rank,
           dist_url=args.dist_url, args=(args,))
