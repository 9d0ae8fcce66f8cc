"""STATrainer end to end on generated shapes data: ISTA steps, logging, checkpoints, resume."""
import json

import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import register_coco_instances

from conftest import IMAGE_SIZE, short_run, tiny_rcnn_cfg
from sta_d2 import STATrainer
from sta_d2.data.synthetic import generate_coco_shapes

# in-process Mask R-CNN training runs, 10-60 s each on 2 shared cores
pytestmark = pytest.mark.slow

TRAIN, VAL = "sta_test_shapes_train", "sta_test_shapes_val"


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    root = tmp_path_factory.mktemp("shapes")
    generate_coco_shapes(str(root), num_train=8, num_val=4, image_size=IMAGE_SIZE, seed=0)
    for name, split in ((TRAIN, "train2017"), (VAL, "val2017")):
        register_coco_instances(name, {}, str(root / f"annotations/instances_{split}.json"), str(root / split))
    yield
    for name in (TRAIN, VAL):
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)


def trainer_cfg(out_dir, policy="ista", max_iter=4, checkpoint_period=100):
    cfg = short_run(tiny_rcnn_cfg(), out_dir, policy, max_iter, checkpoint_period)
    cfg.DATASETS.TRAIN, cfg.DATASETS.TEST = (TRAIN,), (VAL,)
    cfg.SOLVER.BASE_LR = 0.001
    return cfg


def recording_trainer(cfg):
    """A trainer that records, per step, the batch it used and the allocation."""
    trainer = STATrainer(cfg)
    policy = trainer._trainer.policy
    steps = []
    original = policy.next_step

    def next_step(next_batch, availability=None):
        batch, assignment = original(next_batch, availability)
        steps.append((batch, assignment))
        return batch, assignment

    policy.next_step = next_step
    return trainer, steps


def test_ista_takes_two_optimizer_steps_per_batch_and_logs_tasks(shapes, tmp_path):
    cfg = trainer_cfg(tmp_path, max_iter=4)
    cfg.DATASETS.TEST = ()
    trainer, steps = recording_trainer(cfg)
    before = [p.detach().clone() for p in trainer.model.parameters()]
    trainer.resume_or_load(resume=False)
    trainer.train()

    assert len(steps) == 4
    for (b0, a0), (b1, a1) in (steps[0:2], steps[2:4]):
        assert b0 is b1  # same batch revisited
        assert torch.equal(a0.mask ^ a1.mask, torch.ones_like(a0.mask))  # complementary tasks
    assert steps[0][0] is not steps[2][0]
    after = list(trainer.model.parameters())
    assert any(not torch.equal(x, y) for x, y in zip(before, after))

    rows = [json.loads(line) for line in open(tmp_path / "metrics.json")]
    last = rows[-1]
    for task in ("det", "mask"):
        assert f"task_loss/{task}" in last and f"allocated/{task}" in last
    assert last["allocated/det"] + last["allocated/mask"] == 2

    state = torch.load(tmp_path / "model_final.pth", weights_only=True)["trainer"]["_trainer"]
    assert state["optimizer"]["state"], "optimizer state (momentum) is checkpointed"
    assert state["allocation"]["position"] == 0 and "generator" in state["allocation"]


def test_resume_inside_an_ista_cycle_continues_the_allocation(shapes, tmp_path):
    full_run, resumed_run = tmp_path / "full", tmp_path / "resumed"
    trainer, steps = recording_trainer(trainer_cfg(full_run, max_iter=5, checkpoint_period=3))
    trainer.resume_or_load(resume=False)
    trainer.train()
    assert (full_run / "model_0000002.pth").exists()  # after 3 steps: inside the second cycle

    resumed_run.mkdir()
    (resumed_run / "model_0000002.pth").write_bytes((full_run / "model_0000002.pth").read_bytes())
    (resumed_run / "last_checkpoint").write_text("model_0000002.pth")
    resumed, resumed_steps = recording_trainer(trainer_cfg(resumed_run, max_iter=5, checkpoint_period=3))
    resumed.resume_or_load(resume=True)
    assert resumed.start_iter == 3
    saved = torch.load(resumed_run / "model_0000002.pth", weights_only=True)["trainer"]["_trainer"]
    restored = resumed.optimizer.state_dict()["state"]
    assert all(
        torch.equal(restored[k]["momentum_buffer"], v["momentum_buffer"]) for k, v in saved["optimizer"]["state"].items()
    )
    resumed.train()

    assert len(resumed_steps) == 2
    assert all(torch.equal(x.mask, y.mask) for (_, x), (_, y) in zip(steps[3:], resumed_steps))
    end = torch.load(full_run / "model_final.pth", weights_only=True)["trainer"]["_trainer"]["allocation"]
    end_resumed = torch.load(resumed_run / "model_final.pth", weights_only=True)["trainer"]["_trainer"]["allocation"]
    assert torch.equal(end["generator"], end_resumed["generator"])
    assert end["position"] == end_resumed["position"]


def test_evaluation_reports_bbox_and_segm_ap(shapes, tmp_path):
    cfg = trainer_cfg(tmp_path, max_iter=1)
    model = STATrainer.build_model(cfg)
    results = STATrainer.test(cfg, model)
    assert set(results) >= {"bbox", "segm"}
    assert "AP" in results["bbox"] and "AP" in results["segm"]
