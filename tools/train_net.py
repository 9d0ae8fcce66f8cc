#!/usr/bin/env python
"""Train or evaluate an sta_d2 model, with detectron2's command line.

    tools/train_net.py --config-file configs/Demo/shapes_mask_rcnn_ista.yaml
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

The whole config is checked (:func:`sta_d2.check_run`: keys, datasets, weights, device) before
anything is launched or written to OUTPUT_DIR; a mistake is one error with its fix. The terminal
shows the config, datasets, policy, progress and evaluation; the environment, full config and
model go to OUTPUT_DIR/log.txt only, unless ``--verbose`` (detectron2's behaviour).
"""
import warnings

# Deprecation notices of detectron2 v0.6's dependencies (fvcore's torch.jit.script and model_zoo's
# pkg_resources on import, torch.meshgrid in the anchor generator): none is the user's to act on.
warnings.filterwarnings("ignore", message="`torch.jit.script` is deprecated", category=FutureWarning)
warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
warnings.filterwarnings("ignore", message="torch.meshgrid: in an upcoming release", category=UserWarning)

import glob  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402

from detectron2.data import DatasetCatalog, MetadataCatalog  # noqa: E402
from detectron2.engine import default_argument_parser, default_setup  # noqa: E402
from detectron2.evaluation import verify_results  # noqa: E402
from detectron2.utils import comm  # noqa: E402

from sta_d2 import STATrainer, check_run, load_config, setup_logging  # noqa: E402
from sta_d2.data.datasets import register_coco_instances_checked  # noqa: E402
from sta_d2.engine import AtomicCheckpointer, launch  # noqa: E402

logger = logging.getLogger("sta_d2")


def argument_parser():
    """detectron2's command line, plus ``--coco-dataset`` and ``--verbose``."""
    parser = default_argument_parser()
    parser.add_argument(
        "--coco-dataset", nargs=3, action="append", default=[],
        metavar=("NAME", "JSON", "IMAGE_ROOT"),
        help="register the COCO-format instances file JSON, whose images are under IMAGE_ROOT, "
             "as the dataset NAME for DATASETS.TRAIN and DATASETS.TEST (evaluated with COCO AP); "
             "repeatable; give it again with --resume and --eval-only",
    )
    parser.add_argument(
        "--verbose", action="store_true",
        help="also print the environment, full config and model on the terminal, as detectron2 "
             "does (by default they go to OUTPUT_DIR/log.txt only)",
    )
    return parser


def register_coco_datasets(datasets):
    """Register each (name, json file, image root) of ``--coco-dataset`` with sta_d2's checked
    COCO loader (sta_d2.data.datasets.register_coco_instances_checked). A name this process
    registered with the same files is left as it is (``launch`` may run ``main`` in the process
    that checked the config)."""
    for name, json_file, image_root in datasets:
        json_file, image_root = os.path.abspath(json_file), os.path.abspath(image_root)
        if name in DatasetCatalog:
            metadata = MetadataCatalog.get(name)
            if (metadata.get("json_file", None), metadata.get("image_root", None)) == (json_file, image_root):
                continue
            raise ValueError(f"--coco-dataset {name}: a dataset named {name!r} is already "
                             "registered; choose another name")
        register_coco_instances_checked(name, json_file, image_root,
                                        hint="check the paths given to --coco-dataset")


def prepare(args):
    """The finished config of the command line, checked before anything is launched or written
    (:func:`sta_d2.check_run`); the ``--coco-dataset`` datasets registered."""
    register_coco_datasets(args.coco_dataset)
    cfg = load_config(args.config_file, args.opts)
    cfg.freeze()
    check_run(cfg, num_gpus=args.num_gpus, resume=args.resume, eval_only=args.eval_only)
    return cfg


def setup(args, cfg):
    """detectron2's default_setup (OUTPUT_DIR/config.yaml, log.txt, seeds) with sta_d2's terminal
    (:func:`sta_d2.setup_logging`), and what the run is about, on the terminal."""
    setup_logging(cfg.OUTPUT_DIR, verbose=args.verbose)
    default_setup(cfg, args)
    overrides = f", overrides: {' '.join(args.opts)}" if args.opts else ""
    logger.info(f"Config {args.config_file}{overrides}")
    dumps = "" if args.verbose else " (its log.txt holds the environment, the full config and the model)"
    logger.info(f"Output folder {cfg.OUTPUT_DIR}{dumps}")


def describe_training(cfg, num_images):
    """One line: steps, training set, batch, device, weighting method and evaluation."""
    weighting = cfg.STA.WEIGHTING.NAME
    if cfg.STA.WEIGHTING.LOSS_WEIGHTING:
        weighting += f" over {cfg.STA.WEIGHTING.LOSS_WEIGHTING}"
    period = f" every {cfg.TEST.EVAL_PERIOD} steps and" if cfg.TEST.EVAL_PERIOD > 0 else ""
    evaluation = (f"evaluation on {', '.join(cfg.DATASETS.TEST)}{period} after training"
                  if cfg.DATASETS.TEST else "no evaluation (DATASETS.TEST is empty)")
    return (f"Training {cfg.SOLVER.MAX_ITER} optimizer steps on {num_images} images of "
            f"{', '.join(cfg.DATASETS.TRAIN)}, {cfg.SOLVER.IMS_PER_BATCH} per batch, on "
            f"{cfg.MODEL.DEVICE}; weighting {weighting}; {evaluation}")


def describe_outputs(output_dir):
    """One line: what the run left in ``output_dir``."""
    files = {
        "model_final.pth": "model_final.pth (weights)",
        "metrics.json": "metrics.json (losses and evaluation)",
        "inference": "inference/ (predictions)",
        "config.yaml": "config.yaml",
        "log.txt": "log.txt (the full log)",
    }
    found = [text for name, text in files.items() if os.path.exists(os.path.join(output_dir, name))]
    if glob.glob(os.path.join(output_dir, "events.out.tfevents.*")):
        found.append("TensorBoard events")
    return f"Outputs in {output_dir}: {', '.join(found)}"


def main(args, cfg):
    """Train, or evaluate with ``--eval-only``, in this process (one of ``--num-gpus``)."""
    register_coco_datasets(args.coco_dataset)
    setup(args, cfg)
    if args.eval_only:
        model = STATrainer.build_model(cfg)
        AtomicCheckpointer(model, save_dir=cfg.OUTPUT_DIR).resume_or_load(
            cfg.MODEL.WEIGHTS, resume=args.resume
        )
        results = STATrainer.test(cfg, model)
        if comm.is_main_process():
            verify_results(cfg, results)
            logger.info(describe_outputs(cfg.OUTPUT_DIR))
        return results
    trainer = STATrainer(cfg)
    logger.info(describe_training(cfg, len(trainer.train_images)))
    trainer.resume_or_load(resume=args.resume)
    results = trainer.train()
    if comm.is_main_process():
        logger.info(describe_outputs(cfg.OUTPUT_DIR))
    return results


if __name__ == "__main__":
    args = argument_parser().parse_args()
    if args.verbose:
        print("Command Line Args:", args)
    try:
        cfg = prepare(args)
    except (ValueError, FileNotFoundError) as e:  # a config, dataset or device mistake
        if args.verbose:
            raise
        sys.exit(f"{os.path.basename(sys.argv[0])}: error: {e}\n(nothing was written)")
    launch(
        main,
        args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        args=(args, cfg),
    )
