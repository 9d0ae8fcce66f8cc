"""sta_d2 from LazyConfigs: model-zoo LazyConfigs made allocating, the demo LazyConfig training
with ISTA and evaluating on generated shapes data on the CPU, in one process and in two with
tools/lazyconfig_train_net.py, exact resumption (also of a killed run), a non-finite loss stopping
training, and the parts and keys that cannot apply failing with their name."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from detectron2.config import LazyConfig, instantiate
from detectron2.modeling.roi_heads import CascadeROIHeads, ROIHeads

from sta_d2.data.synthetic import generate_coco_shapes
from sta_d2.lazy import allocating_model, allocation_policy, sta_config, task_weighting, train
from sta_d2.modeling import STAGeneralizedRCNN, STAROIHeads, STARPN
from sta_d2.specs import STAConfigError
from test_resume import assert_same_state, trainer_state

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs" / "LazyConfigs"


@pytest.mark.parametrize("policy", ["full", "sta", "ista"])
def test_new_baselines_configs_allocate(policy):
    cfg = LazyConfig.load(str(CONFIGS / f"new_baselines/mask_rcnn_R_50_FPN_100ep_LSJ_{policy}.py"))
    assert cfg.model._target_ is STAGeneralizedRCNN and cfg.model.tasks == ["det", "mask"]
    assert cfg.model.roi_heads._target_ is STAROIHeads and cfg.model.proposal_generator._target_ is STARPN
    assert cfg.sta.POLICY == policy and cfg.train.amp.enabled  # the baseline's mixed precision
    assert cfg.train.max_iter == 184375


def demo_cfg(shapes, out_dir, max_iter, checkpoint_period=100000):
    cfg = LazyConfig.load(str(CONFIGS / "Demo/shapes_mask_rcnn_ista.py"))
    return LazyConfig.apply_overrides(cfg, [
        f"dataloader.train.dataset.names={shapes}", f"dataloader.test.dataset.names={shapes}",
        "dataloader.train.total_batch_size=2", "dataloader.train.num_workers=0", "dataloader.test.num_workers=0",
        f"train.max_iter={max_iter}", f"train.output_dir={out_dir}", f"train.checkpointer.period={checkpoint_period}",
        f"lr_multiplier.scheduler.num_updates={max_iter}", "lr_multiplier.scheduler.milestones=[2,3]",
    ])


def test_demo_trains_with_ista_and_evaluates(shapes, tmp_path):
    trainer = train(demo_cfg(shapes, tmp_path, max_iter=4))
    rows = [json.loads(line) for line in open(tmp_path / "metrics.json")]
    assert {"task_loss/det", "task_loss/mask", "allocated/det"} <= rows[0].keys()
    assert any("bbox/AP" in row for row in rows)
    state = torch.load(tmp_path / "model_final.pth", weights_only=False)["trainer"]
    assert state["allocation"]["position"] == 0 and state["optimizer"]["state"]
    assert trainer.iter == 4


@pytest.mark.slow  # two training runs
def test_resume_continues_exactly(shapes, tmp_path):
    """Training stopped after step 2 of 4 (an ISTA cycle ends there) and resumed ends where the
    uninterrupted run does."""
    whole = train(demo_cfg(shapes, tmp_path / "whole", max_iter=4, checkpoint_period=2))
    resumed_dir = tmp_path / "resumed"
    resumed_dir.mkdir()
    shutil.copy(tmp_path / "whole" / "model_0000001.pth", resumed_dir)
    (resumed_dir / "last_checkpoint").write_text("model_0000001.pth")
    resumed = train(demo_cfg(shapes, resumed_dir, max_iter=4, checkpoint_period=2), resume=True)
    assert resumed.start_iter == 2
    for (name, a), b in zip(whole.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name


def test_parts_that_cannot_allocate_fail_naming_their_node(tmp_path):
    base = CONFIGS / "Demo/shapes_mask_rcnn_ista.py"
    cfg = LazyConfig.load(str(base))
    cfg.model.roi_heads._target_ = ROIHeads
    with pytest.raises(STAConfigError, match=r"model\.roi_heads\._target_"):
        allocating_model(cfg.model)
    cfg = LazyConfig.load(str(base))
    cfg.model.roi_heads._target_ = CascadeROIHeads
    assert allocating_model(cfg.model).roi_heads._target_.__name__ == "STACascadeROIHeads"
    cfg = LazyConfig.apply_overrides(LazyConfig.load(str(base)), ["train.amp.enabled=True", "train.device=meta"])
    with pytest.raises(STAConfigError, match=r"train\.amp\.enabled.*'meta'"):
        train(cfg)


def start_cli(data_root, out_dir, *args):
    """tools/lazyconfig_train_net.py on the demo LazyConfig: 6 steps of 2 images, a checkpoint
    after each."""
    env = {**os.environ, "DETECTRON2_DATASETS": str(data_root), "OMP_NUM_THREADS": "1"}
    overrides = ["dataloader.train.total_batch_size=2", "dataloader.train.num_workers=0", "train.max_iter=6",
                 "train.checkpointer.period=1", "lr_multiplier.scheduler.num_updates=6",
                 "lr_multiplier.scheduler.milestones=[3,5]", f"train.output_dir={out_dir}"]
    return subprocess.Popen([sys.executable, str(REPO / "tools/lazyconfig_train_net.py"), "--config-file",
                             str(CONFIGS / "Demo/shapes_mask_rcnn_ista.py"), *args, *overrides],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def finish(process):
    _, err = process.communicate(timeout=600)
    assert process.returncode == 0, err[-3000:]


@pytest.mark.slow  # training runs in subprocesses, one killed
def test_cli_run_killed_inside_an_ista_cycle_resumes_exactly(tmp_path):
    generate_coco_shapes(str(tmp_path / "data/shapes"), num_train=6, num_val=1, image_size=(64, 64), seed=3)
    straight, interrupted = tmp_path / "straight", tmp_path / "interrupted"
    finish(start_cli(tmp_path / "data", straight))
    process = start_cli(tmp_path / "data", interrupted)
    target = interrupted / "model_0000002.pth"
    deadline = time.time() + 600
    while not target.exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert target.exists(), process.stderr.read()[-3000:]
    inside = [p for p in sorted(interrupted.glob("model_0*.pth")) if trainer_state(p)["trainer"]["allocation"]["position"]]
    (interrupted / "last_checkpoint").write_text(inside[-1].name)
    finish(start_cli(tmp_path / "data", interrupted, "--resume"))
    a, b = trainer_state(straight / "model_final.pth"), trainer_state(interrupted / "model_final.pth")
    assert a["iteration"] == b["iteration"] == 5
    assert_same_state(a["model"], b["model"])
    assert_same_state(a["trainer"], b["trainer"])  # optimizer, scheduler, allocation, weighting, data


@pytest.mark.slow  # two training processes
def test_cli_trains_in_two_processes(tmp_path):
    generate_coco_shapes(str(tmp_path / "data/shapes"), num_train=6, num_val=1, image_size=(64, 64), seed=3)
    finish(start_cli(tmp_path / "data", tmp_path / "out", "--num-gpus", "2"))
    state = trainer_state(tmp_path / "out" / "model_final.pth")
    assert state["iteration"] == 5 and state["trainer"]["allocation"]["position"] == 0
    assert (tmp_path / "out" / "log.txt.rank1").exists()


def test_sta_keys_are_checked_as_in_yacs():
    sta = {"POLICY": "ista", "WEIGHTING": {"NAME": "UncertaintyWeighting"}}
    assert allocation_policy(sta, ["det", "mask"]).steps_per_batch == 2
    model = instantiate(LazyConfig.load(str(CONFIGS / "Demo/shapes_mask_rcnn_ista.py")).model)
    assert type(task_weighting(sta, model, num_images=4)).__name__ == "UncertaintyWeighting"
    for sta, key in (({"POLICY": "nope"}, "STA.POLICY"), ({"TASKS": ["det"]}, "STA.TASKS"),
                     ({"WEIGHTING": {"LOSS_WEIGHTING": "DynamicWeightAverage"}}, "STA.WEIGHTING.LOSS_WEIGHTING")):
        with pytest.raises(STAConfigError, match=key):
            sta_config(sta)


def test_non_finite_loss_stops_before_the_step_naming_its_task(shapes, tmp_path, monkeypatch):
    forward = STAGeneralizedRCNN.forward
    calls = []

    def mask_loss_explodes_at_the_third_step(self, batched_inputs):
        losses = forward(self, batched_inputs)
        calls.append(1)
        if self.training and len(calls) == 3:
            losses["loss_mask"] = losses["loss_mask"] * float("nan")
        return losses

    monkeypatch.setattr(STAGeneralizedRCNN, "forward", mask_loss_explodes_at_the_third_step)
    cfg = LazyConfig.apply_overrides(demo_cfg(shapes, tmp_path, max_iter=4, checkpoint_period=1), ["sta.POLICY=full"])
    with pytest.raises(FloatingPointError, match=r"iteration=2 in task\(s\) \['mask'\]"):
        train(cfg)
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000001.pth"
    assert not (tmp_path / "model_final.pth").exists()
