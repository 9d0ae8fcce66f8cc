#!/usr/bin/env python
"""Train or evaluate an sta_d2 model, with detectron2's command line.

    tools/train_net.py --config-file configs/Demo/shapes_mask_rcnn_ista.yaml MODEL.DEVICE cpu
    tools/train_net.py --config-file ... --eval-only MODEL.WEIGHTS output/model_final.pth
    tools/train_net.py --config-file ... --resume
    tools/train_net.py --config-file ... --num-gpus 8
    tools/train_net.py --config-file ... --num-gpus 2 MODEL.DEVICE cpu   # 2 CPU processes, gloo
    tools/train_net.py --config-file ... --coco-dataset my_train train.json images/ \
        --coco-dataset my_val val.json images/ \
        DATASETS.TRAIN '("my_train",)' DATASETS.TEST '("my_val",)' MODEL.ROI_HEADS.NUM_CLASSES 5

Unlike detectron2's own tools/train_net.py, nothing here requires CUDA: without it, --num-gpus
is the number of processes per machine, joined with the gloo backend (sta_d2.engine.launch).
``--coco-dataset NAME JSON IMAGE_ROOT`` (repeatable) registers a COCO-format dataset, in every
process, before the config is read (docs/datasets.md, "Your own COCO dataset").
"""
import os

from detectron2.data import DatasetCatalog
from detectron2.engine import default_argument_parser, default_setup
from detectron2.evaluation import verify_results
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

from sta_d2 import STATrainer, load_config
from sta_d2.data.datasets import register_coco_instances_checked
from sta_d2.engine import AtomicCheckpointer, launch


def argument_parser():
    """detectron2's command line, plus ``--coco-dataset``."""
    parser = default_argument_parser()
    parser.add_argument(
        "--coco-dataset", nargs=3, action="append", default=[],
        metavar=("NAME", "JSON", "IMAGE_ROOT"),
        help="register the COCO-format instances file JSON, whose images are under IMAGE_ROOT, "
             "as the dataset NAME for DATASETS.TRAIN and DATASETS.TEST (evaluated with COCO AP); "
             "repeatable; give it again with --resume and --eval-only",
    )
    return parser


def register_coco_datasets(datasets):
    """Register each (name, json file, image root) of ``--coco-dataset`` with sta_d2's checked
    COCO loader (sta_d2.data.datasets.register_coco_instances_checked)."""
    for name, json_file, image_root in datasets:
        if name in DatasetCatalog:
            raise ValueError(f"--coco-dataset {name}: a dataset named {name!r} is already "
                             "registered; choose another name")
        register_coco_instances_checked(
            name, os.path.abspath(json_file), os.path.abspath(image_root),
            hint="check the paths given to --coco-dataset",
        )


def setup(args):
    cfg = load_config(args.config_file, args.opts)
    cfg.freeze()
    default_setup(cfg, args)
    setup_logger(cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="sta_d2")
    return cfg


def main(args):
    register_coco_datasets(args.coco_dataset)
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
    args = argument_parser().parse_args()
    print("Command Line Args:", args)
    launch(
        main,
        args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        args=(args,),
    )
