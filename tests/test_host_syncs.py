"""Host synchronisations of one training step, counted per weighting method and per allocation
policy on a tiny SegNet (NYUv2-13 layout) and a tiny Mask R-CNN (shapes).

A call that brings a tensor's value to the host (``item``, ``tolist``, ``cpu``, ``float()``,
``int()``, ``bool()``) makes the host wait for the device (a GPU) to finish everything queued.
:func:`counting_syncs` wraps these methods of ``torch.Tensor`` and records each call with the code
that made it (the nearest frame outside torch). On the CPU, where the suite runs, every such call
is counted, so the counts are an upper bound of a GPU's synchronisations; implicit ones inside
torch (boolean-mask indexing, ``nonzero``) are not seen. Calls are grouped by who makes them:

- ``weighting``: the method (``sta_d2/weighting``, ``sta_d2/comm.py``); bounded by
  ``METHOD_BOUNDS``: 0, except MGDA-UB (1: its T x T Gram matrix goes to the host, where
  Frank-Wolfe runs).
- ``trainer``: AllocationTrainer's step (finite-loss check, metrics, active tasks; and
  detectron2's ``train_loop.py``); bounded by ``TRAINER_BOUND`` = 1, one transfer of all the
  step's losses, weights and logged values. detectron2's SimpleTrainer makes two calls per loss
  (``.cpu().item()``), counted on the same model by
  :func:`test_stock_simple_trainer_makes_two_calls_per_loss`.
- ``host``: code whose tensors are built on the host by construction (the allocation policies and
  ``TaskAssignment``, whose masks come from Python lists and a CPU ``torch.Generator``; the data
  stream; the labelled-task checks of the trainer's loader and the model; PCGrad's task orders,
  drawn from its CPU generator): never a device synchronisation; printed, not bounded.
- ``optimizer``: torch's optimizers (Adam reads its step counts, kept on the host); the same
  under SimpleTrainer; printed, not bounded.
- ``model``: the model's forward (detectron2's R-CNN internals, the dense losses' empty-label
  check); the same under SimpleTrainer; printed, not bounded.
"""
import collections
import functools
import os
import sys
from contextlib import contextmanager

import pytest
import torch
from detectron2.engine import SimpleTrainer
from detectron2.utils.events import EventStorage

from sta_d2 import STATrainer
from test_weighting_training import DENSE_ONLY, METHODS, rcnn_cfg, segnet_cfg

SYNCING = ("item", "tolist", "cpu", "__float__", "__int__", "__bool__")
TORCH_DIR = os.path.dirname(torch.__file__) + os.sep
OPTIM_DIR = os.path.join(TORCH_DIR, "optim") + os.sep
METHOD_BOUNDS = {"MGDAUB": 1}
TRAINER_BOUND = 1
GROUPS = ("weighting", "trainer", "model", "host", "optimizer")
# (file, function) of code that only handles host-built tensors, besides sta_d2/allocation/ and data/
HOST_CODE = {("sta_d2/engine/train_loop.py", "_next_batch"), ("sta_d2/modeling/multitask.py", "task_availability"),
             ("sta_d2/modeling/multitask.py", "allocation"), ("sta_d2/weighting/pcgrad.py", "random_orders")}


def caller():
    """(path from the package's parent, function) of the code that called a counted method: the
    nearest frame outside torch above the counting wrapper; ("torch/optim", optimizer) for a call
    made by a torch optimizer."""
    frame = sys._getframe(2)
    while frame.f_code.co_filename.startswith(TORCH_DIR):
        if frame.f_code.co_filename.startswith(OPTIM_DIR):
            return "torch/optim", frame.f_code.co_filename[len(OPTIM_DIR):-3]
        frame = frame.f_back
    path = frame.f_code.co_filename
    for package in ("/sta_d2/", "/detectron2/"):
        if package in path:
            path = path[path.rindex(package) + 1:]
    return path, frame.f_code.co_name


@contextmanager
def counting_syncs():
    """Record ``(method, (path, function), device type)`` of every call of ``SYNCING`` on a tensor."""
    calls = []

    def counted(name, original):
        @functools.wraps(original)
        def call(self, *args, **kwargs):
            calls.append((name, caller(), self.device.type))
            return original(self, *args, **kwargs)
        return call

    for name in SYNCING:
        setattr(torch.Tensor, name, counted(name, getattr(torch.Tensor, name)))
    try:
        yield calls
    finally:
        for name in SYNCING:
            delattr(torch.Tensor, name)  # torch.Tensor inherits them from torch._C.TensorBase


def group(path, function):
    if path == "torch/optim":
        return "optimizer"
    if path.startswith(("sta_d2/allocation/", "sta_d2/data/")) or (path, function) in HOST_CODE:
        return "host"
    if path.startswith("sta_d2/weighting/") or path == "sta_d2/comm.py":
        return "weighting"
    if path in ("sta_d2/engine/train_loop.py", "detectron2/engine/train_loop.py"):
        return "trainer"
    return "model"


def step_calls(trainer, iteration):
    """The calls of ``trainer.run_step()`` at ``iteration``, by group."""
    trainer.iter = iteration
    with EventStorage(iteration), counting_syncs() as calls:
        trainer.run_step()
    groups = collections.defaultdict(list)
    for name, (path, function), device in calls:
        groups[group(path, function)].append((name, f"{path}:{function}", device))
    return groups


def steps_calls(trainer, steps, warmup=1):
    """:func:`step_calls` of ``steps`` steps after ``warmup`` uncounted ones."""
    for i in range(warmup):
        step_calls(trainer, i)
    return [step_calls(trainer, warmup + i) for i in range(steps)]


def report(name, per_step):
    for i, groups in enumerate(per_step):
        print(f"{name} step {i}: " + ", ".join(f"{g} {len(groups[g])}" for g in GROUPS))


def check(name, per_step, method_bound):
    report(name, per_step)
    for groups in per_step:
        assert len(groups["weighting"]) <= method_bound, groups["weighting"]
        assert len(groups["trainer"]) <= TRAINER_BOUND, groups["trainer"]
        assert all(device == "cpu" for _, _, device in groups["host"])


def dense_trainer(nyuv2, tmp_path, method, policy="full", loss_weighting="", amp=False):
    cfg = segnet_cfg(nyuv2, method, policy, tmp_path, max_iter=10, checkpoint_period=100)
    cfg.STA.WEIGHTING.LOSS_WEIGHTING = loss_weighting
    cfg.SOLVER.AMP.ENABLED = amp
    return STATrainer(cfg)._trainer


DENSE_CASES = [(m, "") for m in METHODS] + [("PCGrad", "UncertaintyWeighting"), ("MGDAUB", "DynamicWeightAverage")]


@pytest.mark.parametrize("method, loss_weighting", DENSE_CASES)
def test_dense_step_syncs_per_method(nyuv2, tmp_path, method, loss_weighting):
    trainer = dense_trainer(nyuv2, tmp_path, method, loss_weighting=loss_weighting)
    check(f"dense {method} {loss_weighting}", steps_calls(trainer, 2), METHOD_BOUNDS.get(method, 0))


@pytest.mark.parametrize("method", ["EqualWeighting", "PCGrad", "MGDAUB"])
@pytest.mark.parametrize("policy", ["sta", "ista", "gap"])
def test_dense_step_syncs_per_policy(nyuv2, tmp_path, policy, method):
    trainer = dense_trainer(nyuv2, tmp_path, method, policy)
    cycle = trainer.policy.steps_per_batch * getattr(trainer.policy, "gap", 1)
    check(f"dense {method} {policy}", steps_calls(trainer, cycle, warmup=cycle), METHOD_BOUNDS.get(method, 0))


@pytest.mark.parametrize("method", METHODS)
def test_dense_step_syncs_with_mixed_precision(nyuv2, tmp_path, method):
    """bfloat16 autocast adds none. (On CUDA, float16's enabled GradScaler adds one in its
    ``step``, reading whether the gradients are finite, as under detectron2's AMPTrainer.)"""
    trainer = dense_trainer(nyuv2, tmp_path, method, policy="sta", amp=True)
    check(f"dense {method} amp", steps_calls(trainer, 2), METHOD_BOUNDS.get(method, 0))


@pytest.mark.parametrize("method", [m for m in METHODS if m not in DENSE_ONLY])
def test_mask_rcnn_step_syncs_per_method(shapes, tmp_path, method):
    trainer = STATrainer(rcnn_cfg(shapes, method, "full", tmp_path))._trainer
    check(f"mask_rcnn {method}", steps_calls(trainer, 1), METHOD_BOUNDS.get(method, 0))


def test_stock_simple_trainer_makes_two_calls_per_loss(nyuv2, tmp_path):
    sta = dense_trainer(nyuv2, tmp_path, "EqualWeighting")
    batch = next(iter(sta.data_loader))
    stock = SimpleTrainer(sta.model, iter(lambda: batch, None), sta.optimizer)
    per_step = steps_calls(stock, 1)
    report("dense stock SimpleTrainer", per_step)
    losses = len(sta.model.tasks)
    assert sorted(name for name, _, _ in per_step[0]["trainer"]) == ["cpu"] * losses + ["item"] * losses
    assert TRAINER_BOUND < 2 * losses


def test_counting_sees_each_kind_of_call_and_restores_torch():
    x = torch.ones(2)
    with counting_syncs() as calls:
        x[0].item(), x.tolist(), x.cpu(), float(x[0]), int(x[0]), bool(x[0])
    assert [name for name, _, _ in calls] == list(SYNCING)
    assert {function for _, (_, function), _ in calls} == {"test_counting_sees_each_kind_of_call_and_restores_torch"}
    assert all(name not in torch.Tensor.__dict__ for name in SYNCING)
