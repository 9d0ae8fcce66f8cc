"""tools/visualize.py on tiny untrained models of both families and generated data: one PNG per
image with the ground truth and every run side by side."""
import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.data.datasets import register_coco_instances
from PIL import Image

from conftest import dense_cfg, tiny_rcnn_cfg
from sta_d2 import STATrainer
from sta_d2.data.datasets import register_nyuv2_13
from sta_d2.data.synthetic import generate_coco_shapes, generate_nyuv2_13

REPO = Path(__file__).parents[1]


@pytest.fixture(scope="module")
def visualize():
    spec = importlib.util.spec_from_file_location("visualize_tool", REPO / "tools/visualize.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def make_run(cfg, run_dir, test_set, seed):
    """A run folder as training leaves it: config.yaml and model_final.pth (random weights)."""
    cfg.DATASETS.TEST = (test_set,)
    cfg.OUTPUT_DIR = str(run_dir)
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text(cfg.dump())
    torch.manual_seed(seed)
    DetectionCheckpointer(STATrainer.build_model(cfg), save_dir=str(run_dir)).save("model_final")
    return str(run_dir)


def render(visualize, *argv):
    args = visualize.argument_parser().parse_args([str(a) for a in argv])
    return [Path(p) for p in visualize.main(args)]


@pytest.mark.slow  # Mask R-CNN inference and drawing: 9-28 s on 2 shared cores
def test_rcnn_runs_side_by_side(visualize, tmp_path, new_name):
    root = tmp_path / "shapes"
    generate_coco_shapes(str(root), num_train=1, num_val=2, image_size=(64, 96), seed=4)
    val = new_name("shapes_val")
    register_coco_instances(val, {}, str(root / "annotations/instances_val2017.json"), str(root / "val2017"))
    cfg = tiny_rcnn_cfg()
    cfg.TEST.DETECTIONS_PER_IMAGE = 3  # random weights score their 100 boxes high: fewer to draw
    runs = [make_run(cfg.clone(), tmp_path / name, val, seed) for seed, name in enumerate(["ft", "ista"])]

    paths = render(visualize, *runs, "--names", "FT", "ISTA", "--num-images", 2, "--output", tmp_path / "pictures")
    assert [p.name for p in paths] == ["00_000000000001.png", "01_000000000002.png"]
    with Image.open(paths[0]) as png:
        width, height = png.size
        pixels = np.asarray(png.convert("RGB"))
    assert abs(width / height - 3 * 96 / 64) < 0.6  # ground truth, FT, ISTA: three 64x96 panels in a row
    assert pixels.std() > 10  # drawn images, not a blank canvas


def test_dense_runs_side_by_side(visualize, tmp_path, new_name):
    root = tmp_path / "nyuv2"
    generate_nyuv2_13(str(root), num_train=0, num_val=2, image_size=(32, 48), seed=2)
    val = new_name("nyuv2_val")
    register_nyuv2_13(val, str(root / "val"))
    both = make_run(dense_cfg("segnet", ("sem_seg", "depth")), tmp_path / "ista", val, 0)
    depth_only = make_run(dense_cfg("segnet", ("depth",)), tmp_path / "depth", val, 1)

    paths = render(visualize, both, depth_only, "--num-images", 1, "--output", tmp_path / "pictures")
    assert [p.name for p in paths] == ["00_0.png"]
    with Image.open(paths[0]) as png:
        width, height = png.size
    # rows sem_seg and depth; columns image, ground truth, ista, depth (which has no sem_seg head)
    assert 1.5 < width / height < 3


def test_mistakes_are_named(visualize, tmp_path, new_name):
    with pytest.raises(FileNotFoundError, match="not the OUTPUT_DIR of a training run"):
        render(visualize, tmp_path, "--output", tmp_path / "pictures")
    with pytest.raises(ValueError, match="--names gives 2 names for 1 runs"):
        render(visualize, tmp_path, "--names", "A", "B", "--output", tmp_path / "pictures")
