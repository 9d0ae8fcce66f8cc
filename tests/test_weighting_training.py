"""Every registered weighting method trains with STA and ISTA through STATrainer, on a tiny SegNet
(NYUv2-13 layout) and a tiny Mask R-CNN (shapes), and resumes with its state and optimizer state."""
import json
import math

import pytest
import torch

from conftest import dense_cfg, short_run, tiny_rcnn_cfg
from sta_d2 import STAConfigError, STATrainer
from sta_d2.weighting import WEIGHTING_REGISTRY

METHODS = sorted(name for name, _ in WEIGHTING_REGISTRY)
# methods that need a double backward (not through roi_align) or per-image losses / predictions
# (R-CNN losses are batch-level) cannot train the R-CNN models
DENSE_ONLY = [m for m in METHODS if WEIGHTING_REGISTRY.get(m).double_backward or WEIGHTING_REGISTRY.get(m).SIDE_OUTPUTS]
POLICIES = ("sta", "ista")


def method_settings(cfg, method, tasks):
    """Select ``method`` with the settings it needs (STATIC: one weight per task; DWA: windows of
    one step so that its weights move within a few steps)."""
    cfg.STA.WEIGHTING.NAME = method
    cfg.STA.WEIGHTING.STATIC.WEIGHTS = [1.0 + i for i in range(len(tasks))]
    cfg.STA.WEIGHTING.DWA.WINDOW = 1
    cfg.STA.WEIGHTING.LR = 0.01


def run_cfg(cfg, out_dir, policy, max_iter, checkpoint_period):
    return short_run(cfg, out_dir, policy, max_iter, checkpoint_period, seed=3)


def segnet_cfg(dataset, method, policy, out_dir, max_iter=3, checkpoint_period=2):
    cfg = dense_cfg("segnet", tasks=("sem_seg", "depth", "normal"))
    cfg.MODEL.DENSE.NUM_CLASSES = 13
    cfg.MODEL.PIXEL_MEAN, cfg.MODEL.PIXEL_STD = [0.0, 0.0, 0.0], [255.0, 255.0, 255.0]
    cfg.INPUT.FORMAT = "RGB"
    cfg.DATASETS.TRAIN = (dataset,)
    cfg.SOLVER.OPTIMIZER = "ADAM"
    cfg.SOLVER.BASE_LR = 1e-3
    cfg.SOLVER.WEIGHT_DECAY = 0.0
    method_settings(cfg, method, cfg.MODEL.DENSE.TASKS)
    return run_cfg(cfg, out_dir, policy, max_iter, checkpoint_period)


def rcnn_cfg(dataset, method, policy, out_dir):
    cfg = tiny_rcnn_cfg()
    cfg.DATASETS.TRAIN = (dataset,)
    cfg.SOLVER.BASE_LR = 1e-3
    method_settings(cfg, method, ("det", "mask"))
    return run_cfg(cfg, out_dir, policy, max_iter=2, checkpoint_period=100)


def train_and_check(cfg, out_dir):
    trainer = STATrainer(cfg)
    tasks = trainer.model.tasks
    shared = [p.detach().clone() for p in trainer.model.shared_parameters()]
    trainer.resume_or_load(resume=False)
    trainer.train()
    assert any(not torch.equal(a, b) for a, b in zip(shared, trainer.model.shared_parameters()))
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())
    rows = [json.loads(line) for line in open(out_dir / "metrics.json")]
    last = rows[-1]
    assert last["iteration"] == cfg.SOLVER.MAX_ITER - 1
    assert all(math.isfinite(row["total_loss"]) for row in rows if "total_loss" in row)
    for task in tasks:
        assert math.isfinite(last[f"task_loss/{task}"]) and math.isfinite(last[f"task_weight/{task}"])
    return trainer


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("method", METHODS)
def test_segnet_trains_and_resumes_with_method_state(nyuv2, tmp_path, method, policy):
    run_dir, resume_dir = tmp_path / "run", tmp_path / "resumed"
    trainer = train_and_check(segnet_cfg(nyuv2, method, policy, run_dir), run_dir)

    resume_dir.mkdir()
    (resume_dir / "model_0000001.pth").write_bytes((run_dir / "model_0000001.pth").read_bytes())
    (resume_dir / "last_checkpoint").write_text("model_0000001.pth")
    resumed = STATrainer(segnet_cfg(nyuv2, method, policy, resume_dir))
    resumed.resume_or_load(resume=True)
    assert resumed.start_iter == 2
    saved = torch.load(resume_dir / "model_0000001.pth", weights_only=True)["trainer"]["_trainer"]
    weighting = resumed._trainer.weighting
    state = weighting.state_dict()
    assert state.keys() == saved["weighting"].keys()
    assert all(torch.equal(state[k], saved["weighting"][k]) for k in state)
    assert type(trainer._trainer.weighting) is type(weighting)

    flat = [p for group in resumed.optimizer.param_groups for p in group["params"]]
    for param in (p for p in weighting.parameters() if p.requires_grad):
        index = next(i for i, p in enumerate(flat) if p is param)
        restored = resumed.optimizer.state[param]
        assert restored and set(restored) == set(saved["optimizer"]["state"][index])
        assert all(torch.equal(restored[k], v) for k, v in saved["optimizer"]["state"][index].items())


@pytest.mark.slow  # a Mask R-CNN training run per method and policy, 2-14 s each
@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("method", [m for m in METHODS if m not in DENSE_ONLY])
def test_mask_rcnn_trains(shapes, tmp_path, method, policy):
    train_and_check(rcnn_cfg(shapes, method, policy, tmp_path), tmp_path)


@pytest.mark.parametrize("method", DENSE_ONLY)
def test_dense_only_methods_are_rejected_for_rcnn(shapes, tmp_path, method):
    why = "roi_align" if WEIGHTING_REGISTRY.get(method).double_backward else "DenseMultiTaskNet"
    with pytest.raises(STAConfigError, match=f"STA.WEIGHTING.NAME.*{why}"):
        STATrainer(rcnn_cfg(shapes, method, "sta", tmp_path))


def test_learnable_method_parameters_are_trained_by_the_optimizer(nyuv2, tmp_path):
    cfg = segnet_cfg(nyuv2, "UncertaintyWeighting", "ista", tmp_path, max_iter=2, checkpoint_period=100)
    trainer = STATrainer(cfg)
    log_vars = trainer._trainer.weighting.log_vars
    assert any(p is log_vars for group in trainer.optimizer.param_groups for p in group["params"])
    trainer.resume_or_load(resume=False)
    trainer.train()
    assert not torch.equal(log_vars.detach(), torch.zeros_like(log_vars))
    assert trainer.optimizer.state[log_vars]["step"] == 2
