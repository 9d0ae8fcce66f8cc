#!/usr/bin/env python
"""Train or evaluate an sta_d2 model, with detectron2's command line.

    tools/train_net.py --config-file configs/Demo/shapes_mask_rcnn_ista.yaml MODEL.DEVICE cpu
    tools/train_net.py --config-file ... --eval-only MODEL.WEIGHTS output/model_final.pth
    tools/train_net.py --config-file ... --resume
    tools/train_net.py --config-file ... --num-gpus 8
    tools/train_net.py --config-file ... --num-gpus 2 MODEL.DEVICE cpu   # 2 CPU processes, gloo

Unlike detectron2's own tools/train_net.py, nothing here requires CUDA: without it, --num-gpus
is the number of processes per machine, joined with the gloo backend (sta_d2.engine.launch).
"""
from detectron2.engine import default_argument_parser, default_setup
from detectron2.evaluation import verify_results
from detectron2.utils import comm

from sta_d2 import STATrainer, load_config
from sta_d2.engine import AtomicCheckpointer, launch


def setup(args):
    cfg = load_config(args.config_file, args.opts)
    cfg.freeze()
    default_setup(cfg, args)
    return cfg


def main(args):
    cfg = setup(args)
    if args.eval_only:
        model = STATrainer.build_model(cfg)
        AtomicCheckpointer(model, save_dir=cfg.OUTPUT_DIR).resume_or_load(
            cfg.MODEL.WEIGHTS, resume=args.resume
        )
        results = STATrainer.test(cfg, model)
        if comm.is_main_process():
            verify_results(cfg, results)
        return results
    trainer = STATrainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    return trainer.train()


if __name__ == "__main__":
    args = default_argument_parser().parse_args()
    print("Command Line Args:", args)
    launch(
        main,
        args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        args=(args,),
    )
