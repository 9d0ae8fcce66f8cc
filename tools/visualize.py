#!/usr/bin/env python
"""Pictures of what trained models predict: validation images, their ground truth and the
predictions of one or several runs side by side, one PNG per image.

    tools/visualize.py output/demo/train --num-images 4 --output output/demo/pictures
    tools/visualize.py out/full out/sta out/ista --names FT STA ISTA --output out/pictures

Each RUN_DIR is a training run's OUTPUT_DIR: its ``config.yaml`` and ``model_final.pth`` (or
``--weights FILE``, for one run). Images come from ``--dataset`` (default: the first run's first
DATASETS.TEST), in dataset order. R-CNN models: ground truth and predicted boxes and masks
drawn by detectron2's Visualizer (predictions scoring ``--score-threshold`` or more). Dense
models: one row per task, the input image, the ground truth and each run's prediction,
segmentation in class colours, depth and disparity on one colour scale per image spanning the
valid ground truth (predictions beyond it take its end colours; invalid ground-truth pixels
black), normals as RGB = (n + 1) / 2. Models run on ``--device`` (default:
CUDA when there is, else the CPU), whatever device they were trained on.
"""
import warnings

# Deprecation notices of detectron2 v0.6's dependencies (see tools/train_net.py).
warnings.filterwarnings("ignore", message="`torch.jit.script` is deprecated", category=FutureWarning)
warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
warnings.filterwarnings("ignore", message="torch.meshgrid: in an upcoming release", category=UserWarning)

import argparse  # noqa: E402
import itertools  # noqa: E402
import os  # noqa: E402

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from detectron2.data import DatasetCatalog, MetadataCatalog  # noqa: E402
from detectron2.data.detection_utils import read_image  # noqa: E402
from detectron2.modeling import META_ARCH_REGISTRY  # noqa: E402
from detectron2.utils.colormap import colormap  # noqa: E402
from detectron2.utils.visualizer import Visualizer  # noqa: E402

from sta_d2 import STATrainer, check_run, load_config, setup_logging  # noqa: E402
from sta_d2.data.datasets import read_dense_sample  # noqa: E402
from sta_d2.engine import AtomicCheckpointer  # noqa: E402
from sta_d2.preflight import check_dataset  # noqa: E402
from sta_d2.modeling import DenseMultiTaskNet  # noqa: E402

PANEL_INCHES = 3.2
# R-CNN images are drawn with their longer side at least this many pixels: Visualizer sizes its
# labels to the drawn image, and on small images (the demo's are 128 pixels) they would be a blur
DRAWN_SIDE = 256
CLASS_COLOURS = colormap(rgb=True, maximum=1)


def argument_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR", help="OUTPUT_DIRs of trained runs, one column each")
    parser.add_argument("--names", nargs="+", help="column titles of the runs (default: their folders' names)")
    parser.add_argument("--weights", help="weights of the run (one RUN_DIR only; default RUN_DIR/model_final.pth)")
    parser.add_argument("--dataset", help="registered dataset of the images (default: the first run's first "
                                          "DATASETS.TEST)")
    parser.add_argument("--num-images", type=int, default=4, help="how many images, from the dataset's first")
    parser.add_argument("--score-threshold", type=float, default=0.5, help="R-CNN: lowest score drawn")
    parser.add_argument("--output", required=True, metavar="DIR", help="folder of the PNGs")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                        help="MODEL.DEVICE of every run (default: %(default)s)")
    return parser


def load_run(run_dir, weights, device):
    """The checked config of a run (``RUN_DIR/config.yaml`` with its weights and ``device``) and
    its model, in eval mode with the weights loaded."""
    config = os.path.join(run_dir, "config.yaml")
    if not os.path.isfile(config):
        raise FileNotFoundError(f"{config} does not exist: {run_dir} is not the OUTPUT_DIR of a training run")
    weights = weights or os.path.join(run_dir, "model_final.pth")
    cfg = load_config(config, ["MODEL.WEIGHTS", weights, "MODEL.DEVICE", device, "DATASETS.TEST", "()"])
    check_run(cfg, eval_only=True)
    model = STATrainer.build_model(cfg)
    AtomicCheckpointer(model).resume_or_load(weights, resume=False)
    return cfg, model.eval()


def is_dense(cfg):
    return issubclass(META_ARCH_REGISTRY.get(cfg.MODEL.META_ARCHITECTURE), DenseMultiTaskNet)


@torch.no_grad()
def predict(cfg, model, dataset, records):
    """The model's outputs on ``records``, the first images of ``dataset``, mapped as in evaluation
    (instances, or dense maps by task; Panoptic FPN's panoptic segmentation is left out)."""
    cfg = cfg.clone()
    cfg.defrost()
    cfg.DATALOADER.NUM_WORKERS = 0
    outputs = []
    for inputs, record in zip(itertools.islice(STATrainer.build_test_loader(cfg, dataset), len(records)), records):
        assert inputs[0]["file_name"] == record["file_name"], (inputs[0]["file_name"], record["file_name"])
        outputs.append({k: v.to("cpu") for k, v in model(inputs)[0].items() if hasattr(v, "to")})
    return outputs


def sem_seg_colours(labels, ignore_value=255):
    """(H, W) class labels -> (H, W, 3) class colours; ignored pixels black."""
    image = CLASS_COLOURS[labels.clip(0) % len(CLASS_COLOURS)]
    image[labels == ignore_value] = 0
    return image


def normal_colours(normals):
    """(H, W, 3) unit normals -> RGB = (n + 1) / 2; all-zero (invalid) normals black."""
    image = ((normals + 1) / 2).clip(0, 1)
    image[~normals.any(axis=-1)] = 0
    return image


def colouring(task, target, metadata):
    """How one task's maps become RGB: class colours, normal colours, or a colour scale spanning
    the valid ground truth (returned too, for its colour bar; None for the others)."""
    if task == "sem_seg":
        return (lambda m: sem_seg_colours(m, metadata.get("ignore_label", 255))), None
    if target.ndim == 3:
        return normal_colours, None
    valid = target[target > 0]
    norm = plt.Normalize(*((valid.min(), valid.max()) if valid.size else (0, 1)))
    scale = plt.get_cmap("plasma")
    return (lambda m: np.where((m > 0)[..., None], scale(norm(m))[..., :3], 0)), norm


def as_map(task, output):
    """A run's output of one task as a numpy map in label space (None: the run has no head)."""
    if task not in output:
        return None
    if task == "sem_seg":
        return output[task].argmax(dim=0).numpy()
    return output[task][0].numpy() if output[task].shape[0] == 1 else output[task].permute(1, 2, 0).numpy()


def draw_dense(record, metadata, names, outputs, path):
    """One image of a dense dataset: a row per task, columns image, ground truth, runs."""
    sample = read_dense_sample(record)
    tasks = [t for t in dict.fromkeys(t for o in outputs for t in o) if t in sample]
    fig, axes = plt.subplots(len(tasks), 2 + len(names), squeeze=False,
                             figsize=(PANEL_INCHES * (2 + len(names)), PANEL_INCHES * 0.8 * len(tasks)))
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    for title, ax in zip(["image", "ground truth", *names], axes[0]):
        ax.set_title(title)
    axes[0, 0].imshow(sample["image"].clip(0, 255).astype(np.uint8))
    for ax in axes[1:, 0]:
        ax.axis("off")
    for row, task in enumerate(tasks):
        unit = metadata.get("depth_unit", "") if task in ("depth", "disparity") else ""
        axes[row, 1].set_ylabel(f"{task} ({unit})" if unit else task)
        colour, norm = colouring(task, sample[task], metadata)
        for ax, m in zip(axes[row, 1:], [sample[task], *(as_map(task, o) for o in outputs)]):
            if m is None:
                ax.text(0.5, 0.5, f"no {task} head", ha="center", va="center", transform=ax.transAxes)
            else:
                ax.imshow(colour(m), interpolation="nearest")
        if norm is not None:
            fig.colorbar(plt.cm.ScalarMappable(norm, "plasma"), ax=list(axes[row, 1:]), fraction=0.02, pad=0.01)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)


def draw_rcnn(record, metadata, names, outputs, score_threshold, path):
    """One image of an R-CNN dataset: ground truth, then each run's boxes and masks."""
    image = read_image(record["file_name"], format="RGB")
    scale = max(1.0, DRAWN_SIDE / max(image.shape[:2]))
    panels, titles = [], ["ground truth"]
    np.random.seed(0)  # Visualizer draws instance colours at random
    panels.append(Visualizer(image, metadata, scale=scale).draw_dataset_dict(record).get_image())
    for name, output in zip(names, outputs):
        instances = output["instances"]
        instances = instances[instances.scores >= score_threshold]
        np.random.seed(0)
        panels.append(Visualizer(image, metadata, scale=scale).draw_instance_predictions(instances).get_image())
        titles.append(f"{name}: {len(instances)} with score >= {score_threshold:g}")
    side = PANEL_INCHES * 1.5
    fig, axes = plt.subplots(1, len(panels), squeeze=False, figsize=(side * len(panels), side))
    for ax, panel, title in zip(axes[0], panels, titles):
        ax.imshow(panel)
        ax.set_title(title)
        ax.axis("off")
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)


def main(args):
    """Render ``args.num_images`` images of the dataset for the runs of ``args``; return the
    PNG paths."""
    names = args.names or [os.path.basename(os.path.normpath(r)) for r in args.runs]
    if len(names) != len(args.runs):
        raise ValueError(f"--names gives {len(names)} names for {len(args.runs)} runs")
    if args.weights and len(args.runs) > 1:
        raise ValueError("--weights is for one run; each of several runs uses its model_final.pth")
    runs = [load_run(run, args.weights, args.device) for run in args.runs]
    if len({is_dense(cfg) for cfg, _ in runs}) > 1:
        raise ValueError("the runs mix dense and R-CNN models; draw each family on its own")
    dataset = args.dataset or load_config(os.path.join(args.runs[0], "config.yaml")).DATASETS.TEST[0]
    check_dataset(dataset, "--dataset")
    records = DatasetCatalog.get(dataset)[: args.num_images]
    outputs = [predict(cfg, model, dataset, records) for cfg, model in runs]
    metadata = MetadataCatalog.get(dataset)
    os.makedirs(args.output, exist_ok=True)
    paths = []
    for i, record in enumerate(records):
        stem = os.path.splitext(os.path.basename(record["file_name"]))[0]
        paths.append(os.path.join(args.output, f"{i:02d}_{stem}.png"))
        per_run = [run_outputs[i] for run_outputs in outputs]
        if is_dense(runs[0][0]):
            draw_dense(record, metadata, names, per_run, paths[-1])
        else:
            draw_rcnn(record, metadata, names, per_run, args.score_threshold, paths[-1])
    return paths


if __name__ == "__main__":
    parser = argument_parser()
    args = parser.parse_args()
    if args.num_images < 1:
        parser.error(f"--num-images {args.num_images}: must be at least 1")
    setup_logging()
    try:
        paths = main(args)
    except (ValueError, FileNotFoundError) as e:
        parser.exit(1, f"{parser.prog}: error: {e}\n")
    print(f"Wrote {len(paths)} pictures to {args.output}: {', '.join(os.path.basename(p) for p in paths)}")
