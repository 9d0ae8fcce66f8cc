"""ILTP and JTR: the methods that need more of the training forward than the task losses
(per-image losses, every task's predictions), checked by hand, and the stable dataset index they
rely on."""
import csv
import math
from types import SimpleNamespace

import pytest
import torch
from detectron2.data import DatasetCatalog
from detectron2.modeling import build_model
from torch import nn

from conftest import dense_batch, dense_cfg, short_run
from sta_d2 import STATrainer, validate_sta_config
from sta_d2.allocation import TaskAssignment
from sta_d2.data import DATASET_INDEX_KEY, training_dataset_dicts
from sta_d2.weighting import InstanceLevelTaskParameters, JointTaskRegularization, WeightingStep

TASKS = ["sem_seg", "depth"]


def iltp_step(method, image_losses, dataset_indices):
    """One ILTP backward for per-image losses ``{task: (batch positions, losses)}``."""
    model = SimpleNamespace(side_outputs=lambda: {"image_losses": image_losses})
    task_losses = {t: torch.zeros((), requires_grad=True) for t in TASKS}
    step = WeightingStep(model=model, active=list(image_losses), iteration=0, dataset_indices=list(dataset_indices))
    return method.backward(task_losses, step)


def test_iltp_gradient_on_its_parameters_by_hand():
    method = InstanceLevelTaskParameters(TASKS, num_images=5, init=0.0, weight_decay=0.1)
    with torch.no_grad():
        method.log_vars[3, 0] = 0.5
        method.log_vars[1, 1] = -1.0
    seg = torch.tensor([2.0, 4.0], requires_grad=True)  # images at batch positions 0, 1
    depth = torch.tensor([3.0], requires_grad=True)  # batch position 1
    weights = iltp_step(method, {"sem_seg": ([0, 1], seg), "depth": ([1], depth)}, dataset_indices=[3, 1])

    # d/ds [mean_i(exp(-s_i) l_i + s_i) + wd/2 s_i^2] = (1 - exp(-s_i) l_i) / n + wd s_i
    expected = torch.zeros(5, 2)
    expected[3, 0] = (1 - math.exp(-0.5) * 2.0) / 2 + 0.1 * 0.5
    expected[1, 0] = (1 - 4.0) / 2
    expected[1, 1] = (1 - math.exp(1.0) * 3.0) / 1 + 0.1 * -1.0
    assert torch.allclose(method.log_vars.grad, expected)
    # the losses are weighted by exp(-s) / n
    assert torch.allclose(seg.grad, torch.tensor([math.exp(-0.5) / 2, 0.5]))
    assert torch.allclose(depth.grad, torch.tensor([math.exp(1.0)]))
    assert weights["sem_seg"] == pytest.approx((math.exp(-0.5) + 1.0) / 2)
    assert weights["depth"] == pytest.approx(math.exp(1.0))


def test_iltp_task_normalised_weights_images_within_a_task_only():
    """TASK_NORMALISED: the model's loss weighs the images by exp(-s) over its batch mean (the
    task weighs 1); the parameters get the same gradient as without the option."""
    grads = []
    for normalised in (False, True):
        method = InstanceLevelTaskParameters(TASKS, num_images=5, weight_decay=0.1, task_normalised=normalised)
        with torch.no_grad():
            method.log_vars[3, 0] = 0.5
        seg = torch.tensor([2.0, 4.0], requires_grad=True)
        weights = iltp_step(method, {"sem_seg": ([0, 1], seg)}, dataset_indices=[3, 1])
        grads.append(method.log_vars.grad.clone())
    precisions = torch.tensor([math.exp(-0.5), 1.0])
    assert torch.allclose(seg.grad, precisions / precisions.mean() / 2)
    assert weights["sem_seg"] == 1.0
    assert torch.allclose(grads[0], grads[1])


def test_iltp_ranks_a_corrupt_label_first_and_exports_per_image(tmp_path):
    """With fixed per-image losses, s_it moves towards log(l_it): the image whose depth loss is
    high (a corrupt label) gets the highest depth parameter."""
    method = InstanceLevelTaskParameters(TASKS, num_images=4, weight_decay=0.0)
    optimizer = torch.optim.SGD([method.log_vars], lr=0.5)
    depth_losses = torch.tensor([0.5, 0.4, 6.0, 0.6])
    for _ in range(200):
        optimizer.zero_grad()
        iltp_step(method, {"depth": ([0, 1, 2, 3], depth_losses)}, dataset_indices=[0, 1, 2, 3])
        optimizer.step()
    assert torch.allclose(method.log_vars[:, 1], depth_losses.log(), atol=1e-3)
    assert torch.equal(method.log_vars[:, 0], torch.zeros(4))  # no sem_seg loss: untouched

    path = tmp_path / "iltp.csv"
    method.export(str(path), [(i, f"id{i}", f"img{i}.png") for i in (3, 0, 2, 1)])
    rows = list(csv.DictReader(open(path)))
    assert [r["dataset_index"] for r in rows] == ["0", "1", "2", "3"]
    assert max(rows, key=lambda r: float(r["log_var/depth"]))["file_name"] == "img2.png"


def test_iltp_rejects_bad_settings():
    cfg = dense_cfg("segnet", tasks=TASKS)
    cfg.STA.WEIGHTING.NAME, cfg.STA.WEIGHTING.ILTP.LR = "InstanceLevelTaskParameters", -1.0
    with pytest.raises(ValueError, match="ILTP.LR"):
        validate_sta_config(cfg)
    with pytest.raises(ValueError, match="number of training images"):
        InstanceLevelTaskParameters(TASKS, num_images=0)


def test_jtr_loss_on_tiny_tensors_by_hand():
    method = JointTaskRegularization(["depth"], in_channels=1, weight=2.0)
    method.encoder, method.decoder = nn.AvgPool2d(2), nn.Identity()  # E = mean of the 2x2 map
    outputs = torch.tensor([[[[0.0, 0.0], [0.0, 4.0]]]], requires_grad=True)
    targets = torch.tensor([[[[1.0, 3.0], [5.0, 7.0]]]])
    # distance (1 - 4)^2 = 9; reconstructions are constant maps at the means 4 and 1:
    # ((3^2 + 1 + 1 + 3^2) + (1 + 1 + 1 + 3^2)) / 4 = 5 + 3
    model = SimpleNamespace(side_outputs=lambda: {"joint_outputs": (outputs, targets)})
    loss = method.regulariser(WeightingStep(model=model, active=["depth"], iteration=0))
    assert loss.item() == pytest.approx(2.0 * (9 + 5 + 3))
    loss.backward()
    # only the distance reaches the predictions: 2 * 2 (1 - 4) / 4 per pixel
    assert torch.allclose(outputs.grad, torch.full_like(outputs, 2.0 * 2 * (1 - 4) / 4))


def test_jtr_targets_hold_labels_only_where_allocated_and_valid():
    cfg = dense_cfg("segnet", tasks=("sem_seg", "depth"))
    model = build_model(cfg)
    model.request_side_outputs(["joint_outputs"])
    batch = dense_batch(2)
    assignment = TaskAssignment(["sem_seg", "depth"], torch.tensor([[True, False], [False, True]]))
    model(assignment.attach(batch))
    outputs, targets = model.side_outputs()["joint_outputs"]
    assert model.joint_channels == outputs.shape[1]
    c = cfg.MODEL.DENSE.NUM_CLASSES
    assert outputs.shape[1] == targets.shape[1] == c + 1
    assert torch.allclose(outputs[:, :c].sum(dim=1), torch.ones(1))  # class probabilities

    seg = batch[0]["sem_seg"]
    valid = seg != 255
    assert torch.equal(targets[0, :c].argmax(dim=0)[valid], seg[valid])  # one-hot labels
    assert torch.equal(targets[0, :c][:, ~valid], outputs[0, :c].detach()[:, ~valid])
    assert torch.equal(targets[1, :c], outputs[1, :c].detach())  # sem_seg not allocated to image 1
    depth = batch[1]["depth"][0]
    assert torch.equal(targets[1, c][depth > 0], depth[depth > 0])
    assert torch.equal(targets[1, c][depth == 0], outputs[1, c].detach()[depth == 0])
    assert torch.equal(targets[0, c], outputs[0, c].detach())


def test_training_set_indices_are_given_before_filtering(tmp_path, new_name):
    name = new_name()
    crowd = {"bbox": [0, 0, 4, 4], "bbox_mode": 1, "category_id": 0, "iscrowd": 1}
    box = dict(crowd, iscrowd=0)
    DatasetCatalog.register(name, lambda: [
        {"file_name": f"{i}.jpg", "image_id": i, "height": 8, "width": 8,
         "annotations": [crowd] if i == 1 else [box]} for i in range(3)
    ])
    cfg = dense_cfg()
    cfg.DATASETS.TRAIN = (name,)
    kept = training_dataset_dicts(cfg)
    assert [(d["image_id"], d[DATASET_INDEX_KEY]) for d in kept] == [(0, 0), (2, 2)]


def test_iltp_trains_from_the_loaders_dataset_index_and_exports(nyuv2, tmp_path):
    cfg = dense_cfg("segnet", tasks=("sem_seg", "depth", "normal"))
    cfg.MODEL.DENSE.NUM_CLASSES = 13
    cfg.DATASETS.TRAIN = (nyuv2,)
    cfg.STA.WEIGHTING.NAME = "InstanceLevelTaskParameters"
    cfg = short_run(cfg, tmp_path, "ista", max_iter=6)  # two batches of 2: each image once
    trainer = STATrainer(cfg)
    batch = next(iter(trainer.build_train_loader(cfg)))
    assert len({x[DATASET_INDEX_KEY] for x in batch}) == 2 and all(0 <= x[DATASET_INDEX_KEY] < 4 for x in batch)
    trainer.train()
    log_vars = trainer._trainer.weighting.log_vars.detach()
    assert (log_vars != 0).all()  # ista: every image trained every task, each parameter moved
    rows = list(csv.DictReader(open(tmp_path / InstanceLevelTaskParameters.EXPORT_FILE)))
    assert len(rows) == 4
    for row in rows:
        assert float(row["log_var/depth"]) == pytest.approx(float(log_vars[int(row["dataset_index"]), 1]))


def test_iltp_parameters_take_the_runs_optimizer_and_momentum_only_with_sgd():
    cfg = dense_cfg("segnet", tasks=TASKS)
    method = InstanceLevelTaskParameters(TASKS, num_images=3, lr=0.5, momentum=0.9)
    cfg.SOLVER.OPTIMIZER = "SGD"
    assert method.param_groups(cfg) == [{"params": [method.log_vars], "lr": 0.5, "weight_decay": 0.0,
                                         "momentum": 0.9}]
    cfg.SOLVER.OPTIMIZER = "ADAM"
    with pytest.raises(ValueError, match=r"ILTP\.MOMENTUM = 0\.9: applies to SGD only.*ADAM"):
        method.param_groups(cfg)
    no_momentum = InstanceLevelTaskParameters(TASKS, num_images=3, lr=0.5)
    assert "momentum" not in no_momentum.param_groups(cfg)[0]
