"""Exactness against stock detectron2, checked with torch.equal: with every task allocated the
losses and gradients are bit-identical to stock's; images allocated no task are as if dropped
from the batch; each task's loss equals stock's on the sub-batch of images allocated that task;
and an unallocated task's loss is an exact zero still connected to the graph."""
import pytest
import torch
from detectron2.modeling import build_model
from detectron2.modeling.proposal_generator import rpn as d2_rpn
from detectron2.modeling.roi_heads import roi_heads as d2_roi_heads
from detectron2.utils.events import EventStorage

from conftest import make_batch, tiny_rcnn_cfg
from sta_d2.allocation import TaskAssignment
from sta_d2.modeling import LOSS_TASKS

SEED = 1234


def build_pair(panoptic):
    """An sta_d2 model and a stock detectron2 model with identical weights, in training mode."""
    torch.manual_seed(0)
    ours = build_model(tiny_rcnn_cfg(panoptic=panoptic))
    stock = build_model(tiny_rcnn_cfg(panoptic=panoptic, stock=True))
    stock.load_state_dict(ours.state_dict())
    return ours.train(), stock.train()


def run(model, inputs):
    torch.manual_seed(SEED)
    with EventStorage():
        losses = model(inputs)
    return losses


def grads(model, loss):
    model.zero_grad(set_to_none=True)
    loss.backward()
    return {n: p.grad for n, p in model.named_parameters() if p.requires_grad}


def deterministic_subsample(labels, num_samples, positive_fraction, bg_label):
    """subsample_labels without randomness: the first positives and negatives, in index order."""
    positive = ((labels != -1) & (labels != bg_label)).nonzero().flatten()
    negative = (labels == bg_label).nonzero().flatten()
    num_pos = min(positive.numel(), int(num_samples * positive_fraction))
    num_neg = min(negative.numel(), num_samples - num_pos)
    return positive[:num_pos], negative[:num_neg]


@pytest.fixture
def no_sampling_randomness(monkeypatch):
    """Make proposal/anchor sampling per-image deterministic in both stock and sta_d2 heads.

    With mixed allocations, sta_d2 samples proposals for images allocated det OR mask, so the
    global random stream cannot line up with a stock run on one task's sub-batch; this isolates
    the loss semantics from random-number order.
    """
    monkeypatch.setattr(d2_rpn, "subsample_labels", deterministic_subsample)
    monkeypatch.setattr(d2_roi_heads, "subsample_labels", deterministic_subsample)


def with_tasks(batch, tasks_per_image):
    return [{**d, "sta_tasks": tuple(t)} for d, t in zip(batch, tasks_per_image)]


@pytest.mark.parametrize("panoptic", [False, True])
def test_full_policy_is_bit_identical_to_stock(panoptic):
    ours, stock = build_pair(panoptic)
    batch = make_batch(3)
    assignment = TaskAssignment(ours.tasks, torch.ones(len(batch), len(ours.tasks), dtype=torch.bool))
    ours_losses = run(ours, assignment.attach(batch))
    stock_losses = run(stock, batch)
    assert ours_losses.keys() == stock_losses.keys()
    for k in stock_losses:
        assert torch.equal(ours_losses[k], stock_losses[k]), k
    ours_grads = grads(ours, sum(ours_losses.values()))
    stock_grads = grads(stock, sum(stock_losses.values()))
    for n, g in stock_grads.items():
        assert (g is None) == (ours_grads[n] is None), n
        assert g is None or torch.equal(ours_grads[n], g), n


@pytest.mark.parametrize("panoptic", [False, True])
def test_images_dropped_from_every_task_match_stock_sub_batch(panoptic):
    """Same random-number stream: images 0 and 2 of 4 have no task at all."""
    ours, stock = build_pair(panoptic)
    batch = make_batch(4, seed=3)
    kept = [1, 3]
    tasks = [ours.tasks if i in kept else () for i in range(4)]
    ours_losses = run(ours, with_tasks(batch, tasks))
    stock_losses = run(stock, [batch[i] for i in kept])
    for k in stock_losses:
        assert torch.equal(ours_losses[k], stock_losses[k]), k


@pytest.mark.parametrize("panoptic", [False, True])
def test_each_task_loss_equals_stock_on_its_sub_batch(panoptic, no_sampling_randomness):
    ours, stock = build_pair(panoptic)
    batch = make_batch(5, seed=7)
    if panoptic:
        tasks = [("det",), ("mask", "sem_seg"), ("sem_seg",), ("det", "mask"), ("mask",)]
    else:
        tasks = [("det",), ("mask",), ("det", "mask"), ("mask",), ("det",)]
    ours_losses = run(ours, with_tasks(batch, tasks))
    for task in ours.tasks:
        sub_batch = [d for d, t in zip(batch, tasks) if task in t]
        stock_losses = run(stock, sub_batch)
        task_keys = [k for k in stock_losses if LOSS_TASKS[k] == task]
        assert task_keys
        for k in task_keys:
            assert torch.equal(ours_losses[k], stock_losses[k]), (task, k)


@pytest.mark.parametrize("panoptic", [False, True])
def test_unallocated_task_gives_connected_exact_zero(panoptic):
    ours, _ = build_pair(panoptic)
    batch = make_batch(3, seed=5)
    for missing in ours.tasks:
        others = tuple(t for t in ours.tasks if t != missing)
        losses = run(ours, with_tasks(batch, [others] * len(batch)))
        task_losses = ours.task_losses(losses)
        zero = task_losses[missing]
        assert zero.item() == 0.0 and not torch.isnan(zero), missing
        assert zero.requires_grad and zero.grad_fn is not None, missing
        g = grads(ours, sum(losses.values()))
        assert all(v is not None and torch.isfinite(v).all() for v in g.values()), missing
