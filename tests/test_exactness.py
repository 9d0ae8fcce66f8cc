"""Exactness against stock detectron2, checked with torch.equal: with every task allocated the
losses and gradients are bit-identical to stock's; images allocated no task are as if dropped
from the batch; for every allocation of a batch of differently sized images, each task's losses
equal stock's on the sub-batch of images allocated that task, padded as the whole batch is, from
the same random state, with detectron2's own random sampling (given batch-invariant
convolutions); and an unallocated task's loss is an exact zero still connected to the graph."""
import pytest
import torch
from detectron2.modeling import build_model
from detectron2.utils.events import EventStorage

from conftest import make_batch, make_sized_batch, tiny_rcnn_cfg
from sta_d2.allocation import TaskAssignment
from sta_d2.modeling import LOSS_TASKS
from sta_d2.specs import STAConfigError

SEED = 1234

# Three images of different sizes and aspect ratios. sta_d2 pads the batch to 64 x 64; stock
# detectron2 would pad the second image alone to 64 x 32, the third to 32 x 64.
SIZES = [(48, 64), (64, 32), (32, 56)]
PADDED_SIDE = 64
# Allocations of SIZES' images, each image's tasks by initial (d: det, m: mask, s: sem_seg; the
# R-CNN drops "s"): every task gets each of the 8 sub-batches (none, each image, each pair, all),
# each image each of the 8 task sets, any two images every pair of {det, mask} sets; and the
# first allocation gives every task to every image.
ALLOCATIONS = [
    ("dms", "dms", "dms"), ("", "", ""), ("", "d", "ds"), ("s", "m", "m"), ("s", "dm", "dms"),
    ("d", "", "d"), ("d", "d", "ms"), ("ds", "m", "dm"), ("ds", "dm", "s"), ("m", "s", "dm"),
    ("m", "ds", "s"), ("ms", "ms", "d"), ("ms", "dms", "ms"), ("dm", "s", "m"), ("dm", "ds", "dms"),
    ("dms", "ms", ""), ("dms", "dms", "ds"),
]


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


@pytest.fixture
def batch_invariant_convolutions(monkeypatch):
    """PyTorch's own CPU convolution (oneDNN off), which computes a batch image by image: each
    image's backbone and RPN-head outputs are then the same in the whole batch as in any
    sub-batch, the condition of per-task exactness (docs/exactness.md)."""
    monkeypatch.setattr(torch.backends.mkldnn, "enabled", False)


def padded_like_whole_batch(stock):
    """``stock``, padding any sub-batch of SIZES' images (and their semantic targets) to the
    PADDED_SIDE x PADDED_SIDE that sta_d2 pads the whole batch to."""
    stock.backbone._size_divisibility = PADDED_SIDE
    return stock


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


def allocated(tasks, letters):
    return tuple(t for t in tasks if t[0] in letters)


@pytest.mark.parametrize("panoptic", [False, True])
def test_each_task_loss_equals_stock_on_its_padded_sub_batch(panoptic, batch_invariant_convolutions):
    """One sta_d2 forward per allocation; every task's losses against stock's on that task's
    sub-batch, both from the same random state, with detectron2's random sampling."""
    ours, stock = build_pair(panoptic)
    stock = padded_like_whole_batch(stock)
    batch = make_sized_batch(SIZES, seed=7)
    assert ours.preprocess_image(batch).tensor.shape[-2:] == (PADDED_SIDE, PADDED_SIDE)
    stock_losses = {}
    for allocation in ALLOCATIONS:
        tasks = [allocated(ours.tasks, letters) for letters in allocation]
        ours_losses = run(ours, with_tasks(batch, tasks))
        for task in ours.tasks:
            images = tuple(i for i, t in enumerate(tasks) if task in t)
            if not images:
                assert ours.task_losses(ours_losses)[task].item() == 0.0, (allocation, task)
                continue
            if images not in stock_losses:
                stock_losses[images] = run(stock, [batch[i] for i in images])
            task_keys = [k for k in stock_losses[images] if LOSS_TASKS[k] == task]
            assert task_keys
            for k in task_keys:
                assert torch.equal(ours_losses[k], stock_losses[images][k]), (allocation, task, k)


def test_one_image_sub_batch_is_exact_only_with_batch_invariant_convolutions(monkeypatch):
    """A: det+sem_seg, B: mask, C: mask+sem_seg. PyTorch's CPU convolution runs a single small
    image through its own kernel and a batch through oneDNN, which round differently: stock's
    backbone features of A alone are not A's rows of the whole batch's, and its det losses on [A]
    differ in the last bits from sta_d2's. With oneDNN off both are equal."""
    ours, stock = build_pair(panoptic=True)
    stock = padded_like_whole_batch(stock)
    batch = make_sized_batch(SIZES, seed=7)
    tasks = [("det", "sem_seg"), ("mask",), ("mask", "sem_seg")]
    images = ours.preprocess_image(batch).tensor
    for onednn in (True, False):
        monkeypatch.setattr(torch.backends.mkldnn, "enabled", onednn)
        with torch.no_grad():
            whole, alone = ours.backbone(images), ours.backbone(images[:1])
        invariant = all(torch.equal(whole[k][:1], alone[k]) for k in whole)
        ours_losses = run(ours, with_tasks(batch, tasks))
        stock_losses = run(stock, batch[:1])
        det_keys = [k for k in stock_losses if LOSS_TASKS[k] == "det"]
        equal = all(torch.equal(ours_losses[k], stock_losses[k]) for k in det_keys)
        assert invariant == equal == (not onednn), onednn


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


def test_mask_head_on_predicted_boxes_is_rejected():
    """Stock's mask head would train on the box head's predictions for the mask images, which
    sta_d2 does not run the box head on unless they are allocated det."""
    cfg = tiny_rcnn_cfg()
    cfg.MODEL.ROI_BOX_HEAD.TRAIN_ON_PRED_BOXES = True
    with pytest.raises(STAConfigError, match="TRAIN_ON_PRED_BOXES"):
        build_model(cfg)
