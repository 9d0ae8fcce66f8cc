"""Dense multi-task models: exactness of allocated losses, the losses themselves, backbones."""
import math

import pytest
import torch
from detectron2.modeling import build_backbone, build_model
from detectron2.layers import ShapeSpec
from detectron2.modeling.backbone.resnet import build_resnet_backbone

from conftest import DENSE_SIZE as SIZE, dense_batch, dense_cfg
from sta_d2 import STAConfigError, validate_sta_config
from sta_d2.dense_tasks import DepthTask, NormalTask, SemSegTask

@pytest.mark.parametrize("backbone", ["resnet", "segnet"])
def test_each_task_loss_equals_the_loss_on_its_sub_batch(backbone):
    torch.manual_seed(0)
    model = build_model(dense_cfg(backbone)).train()
    batch = dense_batch(4)
    tasks = [("sem_seg",), ("depth", "normal"), ("sem_seg", "normal"), ("depth",)]
    losses = model([{**d, "sta_tasks": t} for d, t in zip(batch, tasks)])
    for task in model.tasks:
        sub_batch = [d for d, t in zip(batch, tasks) if task in t]
        assert torch.equal(losses[f"loss_{task}"], model(sub_batch)[f"loss_{task}"]), task


def test_full_allocation_equals_no_allocation():
    torch.manual_seed(0)
    model = build_model(dense_cfg()).train()
    batch = dense_batch(3)
    plain = model(batch)
    allocated = model([{**d, "sta_tasks": tuple(model.tasks)} for d in batch])
    assert all(torch.equal(plain[k], allocated[k]) for k in plain)


def test_unallocated_task_is_a_connected_zero():
    model = build_model(dense_cfg()).train()
    losses = model([{**d, "sta_tasks": ("sem_seg",)} for d in dense_batch(2)])
    for task in ("depth", "normal"):
        zero = losses[f"loss_{task}"]
        assert zero.item() == 0.0 and zero.grad_fn is not None
    sum(losses.values()).backward()
    assert all(p.grad is not None for p in model.heads["depth"].parameters())


def test_losses_by_hand():
    logits = torch.tensor([[[[2.0, 0.0]], [[0.0, 0.0]]]])  # (1, 2 classes, 1, 2)
    target = torch.tensor([[[0, 255]]])
    sem_seg = SemSegTask(num_classes=2, ignore_value=255)
    assert math.isclose(sem_seg.loss(logits, target).item(), math.log(1 + math.exp(-2.0)), rel_tol=1e-6)
    all_ignored = sem_seg.loss(logits, torch.full((1, 1, 2), 255))
    assert all_ignored.item() == 0.0 and not torch.isnan(all_ignored)

    prediction = torch.tensor([[[[1.0, 2.0, 3.0, 4.0]]]])
    depth = torch.tensor([[[[1.5, 0.0, float("nan"), 2.0]]]])  # only pixels 0 and 3 are valid
    assert math.isclose(DepthTask().loss(prediction, depth).item(), (0.5 + 2.0) / 2, rel_tol=1e-6)

    normal_pred = torch.tensor([[[[2.0, 0.0, 1.0]], [[0.0, 3.0, 1.0]], [[0.0, 0.0, 0.0]]]])
    normal_gt = torch.tensor([[[[1.0, 1.0, 0.0]], [[0.0, 0.0, 0.0]], [[0.0, 0.0, 0.0]]]])
    # pixel 0: cos 1; pixel 1: cos 0 (90 degrees); pixel 2: invalid
    assert math.isclose(NormalTask().loss(normal_pred, normal_gt).item(), (0.0 + 1.0) / 2, rel_tol=1e-6)


def test_inference_outputs_every_task_at_input_resolution():
    model = build_model(dense_cfg()).eval()
    with torch.no_grad():
        outputs = model([{"image": d["image"]} for d in dense_batch(2)])
    assert outputs[0]["sem_seg"].shape == (5, *SIZE)
    assert outputs[0]["depth"].shape == (1, *SIZE)
    assert torch.allclose(outputs[1]["normal"].norm(dim=0), torch.ones(SIZE), atol=1e-5)


@pytest.mark.parametrize("stride", [8, 16, 32])
def test_dilated_resnet_keeps_detectron2_parameters_and_reaches_the_output_stride(stride):
    cfg = dense_cfg()
    cfg.MODEL.RESNETS.DEPTH, cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = 50, 256
    cfg.MODEL.RESNETS.OUTPUT_STRIDE = stride
    dilated = build_backbone(cfg)
    plain = build_resnet_backbone(cfg, ShapeSpec(channels=3))
    assert dilated.state_dict().keys() == plain.state_dict().keys()
    assert dilated.output_shape()["res5"].stride == stride
    with torch.no_grad():
        assert dilated(torch.zeros(1, 3, 64, 64))["res5"].shape[-2:] == (64 // stride, 64 // stride)


@pytest.mark.parametrize(
    "key, value, match",
    [
        ("MODEL.DENSE.TASKS", ["sem_seg", "height"], "MODEL.DENSE.TASKS"),
        ("MODEL.RESNETS.OUTPUT_STRIDE", 4, "MODEL.RESNETS.OUTPUT_STRIDE"),
        ("STA.TASKS", ["sem_seg"], "STA.TASKS"),
    ],
)
def test_bad_dense_config_names_the_key(key, value, match):
    cfg = dense_cfg()
    cfg.merge_from_list([key, value])
    with pytest.raises(STAConfigError, match=match):
        validate_sta_config(cfg)


def test_a_feature_the_backbone_lacks_is_named_when_the_model_is_built():
    cfg = dense_cfg()
    cfg.MODEL.DENSE.IN_FEATURE = "res4"
    validate_sta_config(cfg)  # which features a backbone outputs is known once it is built
    with pytest.raises(STAConfigError, match="MODEL.DENSE.IN_FEATURE"):
        build_model(cfg)
