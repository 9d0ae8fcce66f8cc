"""Exact resume: a run killed by a signal (inside an ISTA / gap cycle) and resumed with
``--resume`` ends with the same parameters, optimizer, scheduler, allocation, method and data
state as an uninterrupted run (equal parameters after the resumed steps need the same batches,
augmentations and allocations). And a non-finite loss stops training naming its
task, with the last checkpoint intact."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import dense_cfg, short_run, tiny_rcnn_cfg
from sta_d2 import STATrainer
from sta_d2.data.datasets import register_nyuv2_13
from sta_d2.data.synthetic import generate_coco_shapes, generate_nyuv2_13
from sta_d2.dense_tasks import DepthTask

REPO = Path(__file__).parents[1]


def start(config_file, data_root, *args):
    env = {**os.environ, "DETECTRON2_DATASETS": str(data_root), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, str(REPO / "tools/train_net.py"), "--config-file", str(config_file),
                             *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def finish(process):
    _, err = process.communicate(timeout=600)
    assert process.returncode == 0, err[-3000:]


def trainer_state(path):
    return torch.load(path, weights_only=True)


def assert_same_state(a, b):
    """Equal nested checkpoint contents (tensors with torch.equal)."""
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b)
    elif isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            assert_same_state(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            assert_same_state(x, y)
    else:
        assert a == b


def kill_inside_a_cycle(config_file, data_root, out_dir, after_iteration):
    """Start training, SIGKILL it once the checkpoint of ``after_iteration`` exists, and point
    ``last_checkpoint`` at the latest intact checkpoint taken inside an allocation cycle (as if
    the signal had come then). Returns the iteration the resumed run starts from."""
    process = start(config_file, data_root)
    target = out_dir / f"model_{after_iteration:07d}.pth"
    deadline = time.time() + 600
    while not target.exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert target.exists(), process.stderr.read()[-3000:]
    saved = sorted(out_dir.glob("model_0*.pth"))
    for path in reversed(saved):
        try:
            state = trainer_state(path)
        except Exception:  # the one being written when killed (atomic writes: never the case)
            continue
        if state["trainer"]["_trainer"]["allocation"]["position"] != 0:
            (out_dir / "last_checkpoint").write_text(path.name)
            return state["iteration"] + 1
    raise AssertionError("no checkpoint inside an allocation cycle")


def check_exact_resume(cfg, data_root, tmp_path, kill_after):
    runs = {}
    for name in ("straight", "interrupted"):
        cfg.OUTPUT_DIR = str(tmp_path / name)
        os.makedirs(cfg.OUTPUT_DIR)
        (tmp_path / f"{name}.yaml").write_text(cfg.dump())
        runs[name] = tmp_path / name
    finish(start(tmp_path / "straight.yaml", data_root))
    resumed_from = kill_inside_a_cycle(tmp_path / "interrupted.yaml", data_root, runs["interrupted"], kill_after)
    finish(start(tmp_path / "interrupted.yaml", data_root, "--resume"))

    straight = trainer_state(runs["straight"] / "model_final.pth")
    resumed = trainer_state(runs["interrupted"] / "model_final.pth")
    assert straight["iteration"] == resumed["iteration"] == cfg.SOLVER.MAX_ITER - 1
    assert_same_state(straight["model"], resumed["model"])
    # optimizer, scheduler, allocation, weighting method and data position
    assert_same_state(straight["trainer"], resumed["trainer"])
    return resumed_from


@pytest.mark.slow  # training runs in subprocesses, one killed
def test_dense_ista_with_iltp_resumes_exactly_inside_a_cycle(tmp_path):
    generate_nyuv2_13(str(tmp_path / "data/nyuv2"), num_train=6, num_val=0, image_size=(32, 48), seed=3)
    cfg = short_run(dense_cfg("segnet", tasks=("sem_seg", "depth", "normal")), tmp_path, "ista",
                    max_iter=12, checkpoint_period=1, seed=4)
    cfg.MODEL.DENSE.NUM_CLASSES = 13
    cfg.DATASETS.TRAIN = ("nyuv2_13_train",)
    cfg.INPUT.DENSE.RANDOM_SCALE = [1.0, 1.5]  # random zoom and flip: augmentation must replay
    cfg.INPUT.RANDOM_FLIP = "horizontal"
    cfg.DATALOADER.NUM_WORKERS = 1
    cfg.STA.WEIGHTING.NAME = "InstanceLevelTaskParameters"
    assert check_exact_resume(cfg, tmp_path / "data", tmp_path, kill_after=5) % 3 != 0


@pytest.mark.slow  # training runs in subprocesses, one killed
def test_mask_rcnn_gap_with_uncertainty_weights_resumes_exactly_inside_a_cycle(tmp_path):
    generate_coco_shapes(str(tmp_path / "data/shapes"), num_train=6, num_val=0, image_size=(64, 64), seed=3)
    cfg = short_run(tiny_rcnn_cfg(), tmp_path, "gap", max_iter=8, checkpoint_period=1, seed=4)
    cfg.DATASETS.TRAIN = ("shapes_train",)
    cfg.INPUT.MIN_SIZE_TRAIN, cfg.INPUT.MAX_SIZE_TRAIN = (48, 64), 64
    cfg.STA.GAP = 2
    cfg.SOLVER.BASE_LR = 0.002
    cfg.STA.WEIGHTING.NAME = "UncertaintyWeighting"
    check_exact_resume(cfg, tmp_path / "data", tmp_path, kill_after=2)


def test_non_finite_loss_names_the_task_and_keeps_the_last_checkpoint(tmp_path, monkeypatch, new_name):
    name = new_name()
    generate_nyuv2_13(str(tmp_path / "nyuv2"), num_train=4, num_val=0, image_size=(32, 48), seed=1)
    register_nyuv2_13(name, str(tmp_path / "nyuv2" / "train"))
    cfg = short_run(dense_cfg("segnet", tasks=("sem_seg", "depth")), tmp_path / "out", "full", max_iter=6,
                    checkpoint_period=2)
    cfg.MODEL.DENSE.NUM_CLASSES = 13
    cfg.DATASETS.TRAIN = (name,)
    trainer = STATrainer(cfg)
    loss = DepthTask.loss

    def depth_explodes(self, prediction, target, per_image=False):
        value = loss(self, prediction, target, per_image)
        return value * float("nan") if trainer.iter == 3 else value

    monkeypatch.setattr(DepthTask, "loss", depth_explodes)
    trainer.resume_or_load(resume=False)
    with pytest.raises(FloatingPointError, match=r"iteration=3 in task\(s\) \['depth'\]"):
        trainer.train()
    last = (tmp_path / "out" / "last_checkpoint").read_text()
    assert last == "model_0000001.pth"
    state = trainer_state(tmp_path / "out" / last)
    assert all(torch.isfinite(v).all() for v in state["model"].values())
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())  # no NaN update applied
