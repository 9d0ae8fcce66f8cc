"""Two CPU processes (gloo, through sta_d2.engine.launch) train as one: replicas stay identical,
ranks allocate differently, and the result is what one process gets from the same sub-batches
and allocations with DDP's gradient averaging."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from detectron2.data import DatasetMapper
from detectron2.modeling import build_model
from detectron2.utils.events import EventStorage

from conftest import dense_cfg, short_run, tiny_rcnn_cfg
from sta_d2 import STATrainer
from sta_d2.allocation import TaskAssignment
from sta_d2.data import DATASET_INDEX_KEY, training_dataset_dicts
from sta_d2.data.datasets import register_all_shapes
from sta_d2.data.synthetic import generate_coco_shapes, generate_nyuv2_13

pytestmark = pytest.mark.slow  # each test trains in 2 subprocesses

WORKER = Path(__file__).with_name("distributed_worker.py")
PROCESSES = 2


def run_distributed(cfg, out_dir, data_root):
    """Train ``cfg`` in 2 processes; the per-rank records of distributed_worker.py."""
    config_file = out_dir / "config.yaml"
    config_file.write_text(cfg.dump())
    env = {**os.environ, "DETECTRON2_DATASETS": str(data_root), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(WORKER), str(config_file), str(out_dir), str(PROCESSES)],
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return [torch.load(out_dir / f"rank{r}.pt", weights_only=True) for r in range(PROCESSES)]


def assert_replicas_identical(ranks):
    first = ranks[0]
    for other in ranks[1:]:
        assert first["params"].keys() == other["params"].keys()
        assert all(torch.equal(first["params"][k], other["params"][k]) for k in first["params"])
        assert all(torch.equal(first["weighting"][k], other["weighting"][k]) for k in first["weighting"])


@pytest.fixture(scope="module")
def shapes_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("dist_data")
    generate_coco_shapes(str(root / "shapes"), num_train=8, num_val=1, image_size=(64, 64), seed=4)
    return root


def test_two_processes_train_ista_as_one_process_with_the_same_batches(shapes_root, tmp_path, reregister):
    cfg = short_run(tiny_rcnn_cfg(), tmp_path, "ista", max_iter=4, seed=5)
    cfg.DATASETS.TRAIN = ("shapes_train",)
    cfg.SOLVER.IMS_PER_BATCH = 4  # 2 images per process
    cfg.SOLVER.BASE_LR = 0.01
    cfg.INPUT.RANDOM_FLIP = "none"
    cfg.INPUT.MIN_SIZE_TRAIN, cfg.INPUT.MAX_SIZE_TRAIN = (64,), 64
    # every anchor and proposal is sampled, so the sampled sets do not depend on a process's RNG
    cfg.MODEL.RPN.BATCH_SIZE_PER_IMAGE = cfg.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE = 100000
    torch.manual_seed(0)
    init = build_model(cfg)
    torch.save({"model": init.state_dict()}, tmp_path / "init.pth")
    cfg.MODEL.WEIGHTS = str(tmp_path / "init.pth")
    ranks = run_distributed(cfg, tmp_path, shapes_root)

    assert_replicas_identical(ranks)
    steps = [r["steps"] for r in ranks]
    assert all(len(s) == cfg.SOLVER.MAX_ITER for s in steps)  # same number of ISTA sub-steps
    for s in steps:  # ista, 2 tasks, 1 per image: each batch is visited twice, every task once
        for (first, a), (second, b) in zip(s[::2], s[1::2]):
            assert first == second and torch.equal(a | b, torch.ones_like(a)) and not (a & b).any()
    assert any(not torch.equal(a, b) for (_, a), (_, b) in zip(*steps))  # per-rank allocation
    assert set(i for s in steps for indices, _ in s for i in indices) == set(range(8))

    # one process, same start, same sub-batches and allocations, gradients averaged as DDP does
    reregister(str(shapes_root), ["shapes_train", "shapes_val"], register_all_shapes)
    model = build_model(cfg)
    model.load_state_dict(torch.load(tmp_path / "init.pth", weights_only=True)["model"])
    model.train()
    optimizer = STATrainer.build_optimizer(cfg, model)
    records = {d[DATASET_INDEX_KEY]: d for d in training_dataset_dicts(cfg)}
    mapper = DatasetMapper(cfg, is_train=True)
    with EventStorage():
        for per_rank in zip(*steps):
            optimizer.zero_grad()
            for indices, mask in per_rank:
                batch = TaskAssignment(model.tasks, mask).attach([mapper(dict(records[i])) for i in indices])
                (sum(model(batch).values()) / PROCESSES).backward()
            optimizer.step()
    final = dict(model.named_parameters())
    for name, value in ranks[0]["params"].items():
        assert torch.allclose(final[name].detach(), value, rtol=1e-4, atol=1e-6), name


@pytest.fixture(scope="module")
def nyuv2_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("dist_nyu")
    generate_nyuv2_13(str(root / "nyuv2"), num_train=8, num_val=0, image_size=(32, 48), seed=2)
    return root


@pytest.mark.parametrize("method, amp", [("PCGrad", False), ("ImpartialAuxiliaryLearning", False),
                                         ("DynamicWeightAverage", False), ("InstanceLevelTaskParameters", False),
                                         ("PCGrad", True)])
def test_methods_keep_processes_in_step(nyuv2_root, tmp_path, method, amp):
    """Per-task gradients, loss statistics and the methods' own parameters are reduced across
    processes: after a few sta steps every process holds the same model and method state (with
    mixed precision too)."""
    cfg = short_run(dense_cfg("segnet", tasks=("sem_seg", "depth", "normal")), tmp_path, "sta", max_iter=3, seed=1)
    cfg.MODEL.DENSE.NUM_CLASSES = 13
    cfg.DATASETS.TRAIN = ("nyuv2_13_train",)
    cfg.SOLVER.IMS_PER_BATCH = 4
    cfg.STA.WEIGHTING.NAME = method
    cfg.STA.WEIGHTING.DWA.WINDOW = 1
    cfg.SOLVER.AMP.ENABLED = amp
    ranks = run_distributed(cfg, tmp_path, nyuv2_root)
    assert_replicas_identical(ranks)
    assert any(not torch.equal(a, b) for (_, a), (_, b) in zip(ranks[0]["steps"], ranks[1]["steps"]))
