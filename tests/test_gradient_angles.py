"""Gradient-angle analysis: the library's angles against cosines of torch.autograd.grad gradients
on the same tiny model and batches (FT, STA, ISTA sub-steps), its JSON and PNG, the training hook
(logged where it should, training unchanged) and tools/analyze_gradients.py end to end."""
import copy
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from detectron2.config import get_cfg
from detectron2.modeling import build_model
from detectron2.utils.env import seed_all_rng
from PIL import Image

from conftest import dense_batch, dense_cfg, short_run, tiny_rcnn_cfg
from sta_d2 import STAConfigError, STATrainer, add_sta_config, merge_config_file, validate_sta_config
from sta_d2.allocation import TASKS_KEY, allocation_generator
from sta_d2.analysis import KINDS, gradient_angles
from sta_d2.reporting.gradient_angle_plots import DPI, PANEL_SIZE, plot_gradient_angles
from sta_d2.data.synthetic import generate_nyuv2_13
from sta_d2.engine import unwrap_model

REPO = Path(__file__).parents[1]
TASKS = ["sem_seg", "depth", "normal"]


def direct_gradients(model, batch, allocation):
    """Per task and the sum of the task losses: the flat gradient on the shared parameters, by
    torch.autograd.grad on the inputs carrying ``allocation`` (the tasks of each image)."""
    inputs = [{**x, TASKS_KEY: tuple(tasks)} for x, tasks in zip(batch, allocation)]
    losses = model.task_losses(model(inputs))
    shared = model.shared_parameters()

    def flat(loss):
        grads = torch.autograd.grad(loss, shared, retain_graph=True, allow_unused=True)
        return torch.cat([(torch.zeros_like(p) if g is None else g).flatten() for g, p in zip(grads, shared)])

    return {t: flat(losses[t]) for t in model.tasks}, flat(sum(losses.values()))


def direct_cosine(a, b):
    """Cosine of two gradients, in float64; None when one is zero (no gradient)."""
    a, b = a.double(), b.double()
    if a.norm() == 0 or b.norm() == 0:
        return None
    return (a @ b / (a.norm() * b.norm())).item()


def direct_angle(a, b):
    cosine = direct_cosine(a, b)
    return None if cosine is None else math.degrees(math.acos(max(-1.0, min(1.0, cosine))))


def assert_angles(measured, expected):
    assert len(measured) == len(expected)
    for m, e in zip(measured, expected):
        assert (m is None) == (e is None)
        assert m is None or m == pytest.approx(e, abs=1e-3)


@pytest.fixture(scope="module")
def analysed():
    """A tiny 3-task SegNet, three batches (one of 2 images: STA with K=1 leaves a task out) and
    the analysis of them."""
    torch.manual_seed(0)
    model = build_model(dense_cfg("segnet", tasks=TASKS))
    batches = [dense_batch(4, seed=1), dense_batch(2, seed=2), dense_batch(3, seed=3)]
    result = gradient_angles(model, batches, tasks_per_image=1, generator=allocation_generator(5, 0))
    return model, batches, result


def test_angles_equal_those_of_directly_computed_gradients(analysed):
    model, batches, result = analysed
    for kind in ("full", "sta"):
        for b, batch in enumerate(batches):
            (allocation,) = result["allocations"][kind][b]
            grads, _ = direct_gradients(model, batch, allocation)
            for pair, angles in result["angles"][kind].items():
                a, c = pair.split("-")
                assert_angles([angles[b]], [direct_angle(grads[a], grads[c])])
    assert all(tasks == TASKS for alloc in result["allocations"]["full"] for tasks in alloc[0])
    # the 2-image batch: STA (K = 1) gives at most 2 of the 3 tasks an image
    assert sum(result["angles"]["sta"][pair][1] is None for pair in result["angles"]["sta"]) >= 2

    for b, batch in enumerate(batches):
        substeps = result["allocations"]["ista"][b]
        assert len(substeps) == 3  # ceil(T / K) sub-steps on the same batch
        for image in zip(*substeps):  # every image uses every task exactly once
            assert sorted(t for tasks in image for t in tasks) == sorted(TASKS)
        totals = [direct_gradients(model, batch, allocation)[1] for allocation in substeps]
        assert_angles([result["angles"]["ista"]["1-2"][b], result["angles"]["ista"]["2-3"][b]],
                      [direct_angle(totals[0], totals[1]), direct_angle(totals[1], totals[2])])


def test_result_has_the_documented_structure(analysed):
    _, batches, result = analysed
    pairs = {"full": ["sem_seg-depth", "sem_seg-normal", "depth-normal"], "ista": ["1-2", "2-3"]}
    pairs["sta"] = pairs["full"]
    assert result["tasks"] == TASKS and result["tasks_per_image"] == 1 and result["num_batches"] == 3
    for kind in KINDS:
        assert list(result["angles"][kind]) == pairs[kind]
        assert len(result["allocations"][kind]) == len(batches)
        for pair, angles in result["angles"][kind].items():
            assert len(angles) == len(batches)
            measured = [a for a in angles if a is not None]
            assert all(0 <= a <= 180 for a in measured)
            assert result["skipped"][kind][pair] == len(angles) - len(measured)
            assert result["mean"][kind][pair] == (pytest.approx(sum(measured) / len(measured)) if measured else None)
    assert json.loads(json.dumps(result)) == result  # JSON-ready as it is


def test_png_has_one_panel_per_pair(analysed, tmp_path):
    _, _, result = analysed
    path = tmp_path / "angles.png"
    plot_gradient_angles(result, str(path))
    with Image.open(path) as image:
        assert image.size == (round(PANEL_SIZE[0] * DPI) * 5, round(PANEL_SIZE[1] * DPI))  # 3 task pairs, 2 ISTA
        assert len(set(image.convert("L").getdata())) > 10  # something is drawn


def segnet_cfg(dataset, out_dir, policy, max_iter):
    """A SegNet with BatchNorm (running statistics the hook must leave alone)."""
    cfg = dense_cfg("segnet", tasks=TASKS)
    cfg.MODEL.SEGNET.NORM = "BN"
    cfg.MODEL.DENSE.NUM_CLASSES = 13
    cfg.MODEL.PIXEL_MEAN, cfg.MODEL.PIXEL_STD = [0.0, 0.0, 0.0], [255.0, 255.0, 255.0]
    cfg.INPUT.FORMAT = "RGB"
    cfg.DATASETS.TRAIN = (dataset,)
    cfg.SOLVER.BASE_LR = 0.01
    return short_run(cfg, out_dir, policy, max_iter)


def rcnn_cfg(dataset, out_dir, policy, max_iter):
    """A tiny Mask R-CNN: its losses sample anchors and proposals from torch's generator."""
    cfg = tiny_rcnn_cfg()
    cfg.DATASETS.TRAIN = (dataset,)
    cfg.SOLVER.BASE_LR = 0.001
    return short_run(cfg, out_dir, policy, max_iter)


def trained(cfg, period):
    cfg.STA.ANALYSIS.GRAD_COSINE_PERIOD = period
    seed_all_rng(0)  # the same initial model
    trainer = STATrainer(cfg)
    trainer.resume_or_load(resume=False)
    trainer.train()
    return trainer


@pytest.mark.parametrize("model, max_iter, measured_at", [
    pytest.param("rcnn", 3, [1], marks=pytest.mark.slow), ("segnet", 4, [1, 3])])
def test_hook_logs_every_period_and_leaves_training_unchanged(model, max_iter, measured_at, shapes, nyuv2, tmp_path):
    # R-CNN with FT: both tasks every step; SegNet with STA, K = 2: at least 2 tasks every step.
    def cfg(out):
        if model == "rcnn":
            return rcnn_cfg(shapes, tmp_path / out, "full", max_iter)
        c = segnet_cfg(nyuv2, tmp_path / out, "sta", max_iter)
        c.STA.TASKS_PER_IMAGE = 2
        return c

    plain, measured = trained(cfg("plain"), 0), trained(cfg("measured"), 2)
    history = measured.storage.histories()
    assert "grad/mean_pairwise_cosine" not in plain.storage.histories()
    assert [it for _, it in history["grad/mean_pairwise_cosine"].values()] == measured_at
    pairs = [key for key in history if key.startswith("grad_cos/")]
    for mean, it in history["grad/mean_pairwise_cosine"].values():
        cosines = [v for key in pairs for v, i in history[key].values() if i == it]
        assert cosines and -1 <= mean <= 1 and mean == pytest.approx(sum(cosines) / len(cosines))

    after, before = unwrap_model(measured.model).state_dict(), unwrap_model(plain.model).state_dict()
    assert all(torch.equal(after[k], before[k]) for k in before)  # parameters and BatchNorm statistics


def test_hook_logs_the_cosines_of_the_steps_own_gradients(nyuv2, tmp_path):
    cfg = segnet_cfg(nyuv2, tmp_path, "full", max_iter=1)
    cfg.STA.ANALYSIS.GRAD_COSINE_PERIOD = 1
    trainer = STATrainer(cfg)
    initial = copy.deepcopy(unwrap_model(trainer.model))
    policy, steps = trainer._trainer.policy, []
    next_step = policy.next_step

    def recorded_step(*args):
        steps.append(next_step(*args))
        return steps[-1]

    policy.next_step = recorded_step
    trainer.resume_or_load(resume=False)
    trainer.train()

    (batch, assignment), = steps
    allocation = [x[TASKS_KEY] for x in assignment.attach(batch)]
    grads, _ = direct_gradients(initial, batch, allocation)
    history = trainer.storage.histories()
    cosines = []
    for a, b in [("sem_seg", "depth"), ("sem_seg", "normal"), ("depth", "normal")]:
        (value, it), = history[f"grad_cos/{a}-{b}"].values()
        assert it == 0 and value == pytest.approx(direct_cosine(grads[a], grads[b]), abs=1e-5)
        cosines.append(value)
    assert history["grad/mean_pairwise_cosine"].latest() == pytest.approx(sum(cosines) / 3)


def test_period_must_be_a_non_negative_integer():
    cfg = get_cfg()
    add_sta_config(cfg)
    cfg.STA.ANALYSIS.GRAD_COSINE_PERIOD = -1
    with pytest.raises(STAConfigError, match=r"cfg\.STA\.ANALYSIS\.GRAD_COSINE_PERIOD = -1"):
        validate_sta_config(cfg)


@pytest.mark.slow  # tools/analyze_gradients.py in a subprocess
def test_cli_writes_json_and_png(tmp_path):
    datasets = tmp_path / "datasets"
    generate_nyuv2_13(str(datasets / "nyuv2"), num_train=4, num_val=1, image_size=(32, 48), seed=4)
    config = REPO / "configs/Demo/nyuv2_segnet_ista.yaml"
    cfg = get_cfg()
    add_sta_config(cfg)
    merge_config_file(cfg, str(config))
    weights = tmp_path / "weights.pth"
    torch.save({"model": build_model(cfg).state_dict()}, weights)
    out = tmp_path / "angles"
    result = subprocess.run(
        [sys.executable, str(REPO / "tools/analyze_gradients.py"), "--config-file", str(config),
         "--num-batches", "2", "--output", str(out), "MODEL.WEIGHTS", str(weights),
         "SOLVER.IMS_PER_BATCH", "2", "DATALOADER.NUM_WORKERS", "0"],
        env={**os.environ, "DETECTRON2_DATASETS": str(datasets)}, capture_output=True, text=True, timeout=600,
    )
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-3000:]
    assert f"Loading from {weights}" in log
    assert "gradient angles" in result.stderr and "2/2" in result.stderr  # the progress bar

    written = json.load(open(out / "gradient_angles.json"))
    assert written["config_file"] == str(config) and written["weights"] == str(weights)
    assert written["tasks"] == ["sem_seg", "depth"] and written["num_batches"] == 2
    assert list(written["angles"]["full"]) == ["sem_seg-depth"] and list(written["angles"]["ista"]) == ["1-2"]
    assert all(len(written["angles"][kind][pair]) == 2 for kind in KINDS for pair in written["angles"][kind])
    with Image.open(out / "gradient_angles.png") as image:
        assert image.size == (round(PANEL_SIZE[0] * DPI) * 2, round(PANEL_SIZE[1] * DPI))
