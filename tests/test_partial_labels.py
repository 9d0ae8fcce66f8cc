"""Partially labelled data: allocation only among an image's labelled tasks, unlabelled images
are skipped and counted, and models accept inputs that lack some targets."""
import math

import pytest
import torch
from detectron2.modeling import build_model
from detectron2.utils.events import EventStorage
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import dense_batch, dense_cfg, make_batch, tiny_rcnn_cfg
from sta_d2 import STAConfigError
from sta_d2.allocation import InterleavedPolicy, StochasticPolicy, allocation_generator, can_cover
from sta_d2.data.partial_labels import simulate_partial_labels
from sta_d2.engine import AllocationTrainer
from sta_d2.weighting import EqualWeighting

TASKS = ("a", "b", "c", "d")


def availability_matrices(draw_rows=st.integers(1, 6), draw_tasks=st.integers(1, 4)):
    return st.tuples(draw_rows, draw_tasks).flatmap(
        lambda nt: st.tuples(
            st.lists(st.lists(st.booleans(), min_size=nt[1], max_size=nt[1]), min_size=nt[0], max_size=nt[0]),
            st.integers(1, nt[1]),
        )
    )


def as_availability(rows):
    table = torch.tensor(rows, dtype=torch.bool)
    return table, (lambda batch: table)


def test_can_cover_by_hand():
    assert not can_cover(torch.tensor([[True, True], [False, False]]), 1)
    assert can_cover(torch.tensor([[True, True], [False, False]]), 2)
    assert can_cover(torch.tensor([[True, False], [True, False]]), 1)  # task 1 has no image: ignored
    assert not can_cover(torch.tensor([[True, True], [True, True], [False, False]])[:1], 1)
    assert can_cover(torch.tensor([[True, True, False], [True, False, False], [False, False, True]]), 1)
    assert not can_cover(torch.tensor([[True, True, True], [True, False, False], [True, False, False]]), 1)


@settings(max_examples=60, deadline=None)
@given(availability_matrices(), st.integers(0, 1000))
def test_sta_allocates_only_labelled_tasks_and_covers_when_possible(rows_k, seed):
    rows, k = rows_k
    table, availability = as_availability(rows)
    tasks = TASKS[: table.shape[1]]
    policy = StochasticPolicy(tasks, k, allocation_generator(seed, 0))
    batch = [{} for _ in rows]
    for _ in range(3):
        _, a = policy.next_step(lambda: batch, availability)
        assert not (a.mask & ~table).any()
        assert a.mask.sum(dim=1).tolist() == table.sum(dim=1).clamp(max=k).tolist()
        if can_cover(table, k):
            assert torch.equal(a.mask.any(dim=0), table.any(dim=0))


@settings(max_examples=60, deadline=None)
@given(availability_matrices(), st.integers(1, 2), st.integers(0, 1000))
def test_ista_cycles_only_through_labelled_tasks(rows_k, gap, seed):
    rows, k = rows_k
    table, availability = as_availability(rows)
    tasks = TASKS[: table.shape[1]]
    policy = InterleavedPolicy(tasks, k, allocation_generator(seed, 0), gap=gap)
    steps = [policy.next_step(lambda: [{} for _ in rows], availability)[1] for _ in range(gap * policy.steps_per_batch)]
    assert policy.steps_per_batch == math.ceil(len(tasks) / k)
    for j in range(gap):
        used = torch.stack([a.mask for a in steps[j::gap]]).sum(dim=0)
        assert torch.equal(used, table.long())  # each labelled task exactly once, nothing else


def test_rcnn_accepts_inputs_without_some_targets_and_rejects_allocating_them():
    model = build_model(tiny_rcnn_cfg(panoptic=True)).train()
    batch = make_batch(3)
    del batch[1]["instances"]
    del batch[2]["sem_seg"]
    tasks = [("det", "sem_seg"), ("sem_seg",), ("mask",)]
    assert model.task_availability(batch).tolist() == [[True] * 3, [False, False, True], [True, True, False]]
    with EventStorage():
        losses = model([{**x, "sta_tasks": t} for x, t in zip(batch, tasks)])
        assert all(torch.isfinite(v) for v in losses.values())
        with pytest.raises(ValueError, match="input 1 .* allocated task 'det' but has no 'det' labels"):
            model([{**x, "sta_tasks": ("det",)} for x in batch])


def test_trainer_skips_and_counts_images_without_labels():
    torch.manual_seed(0)
    model = build_model(dense_cfg(tasks=("sem_seg", "depth"))).train()
    batch = [{k: v for k, v in x.items() if k != "normal"} for x in dense_batch(4)]
    del batch[1]["sem_seg"], batch[1]["depth"]  # no label at all: skipped
    del batch[2]["depth"]  # sem_seg only
    seen = []
    original_forward = model.forward
    model.forward = lambda inputs: seen.append(inputs) or original_forward(inputs)
    policy = StochasticPolicy(model.tasks, 1, allocation_generator(0, 0))
    trainer = AllocationTrainer(model, [batch], torch.optim.SGD(model.parameters(), lr=0.01),
                                policy, EqualWeighting(model.tasks), seed=0)
    with EventStorage() as storage:
        trainer.iter = 0
        trainer.run_step()
        assert storage.latest()["skipped_images"][0] == 1
    inputs = seen[0]
    assert len(inputs) == 3 and all("sem_seg" in x or "depth" in x for x in inputs)
    assert inputs[1]["sta_tasks"] == ("sem_seg",)  # the image with only sem_seg labels


def records(n):
    return [{"image_id": str(i), "file_name": f"{i}.png", "annotations": [], "sem_seg_file_name": f"{i}_s.png",
             "depth_file_name": f"{i}.npy"} for i in range(n)]


def label_fields(record):
    return {k for k in ("annotations", "sem_seg_file_name", "depth_file_name") if k in record}


def test_one_label_per_image_keeps_exactly_one_label_group_reproducibly():
    tasks = ("det", "mask", "sem_seg", "depth")
    out = simulate_partial_labels(records(300), tasks, "one_per_image", [], seed=3)
    assert all(len(label_fields(r)) == 1 for r in out)  # det and mask go together
    counts = {f: sum(f in label_fields(r) for r in out) for f in ("annotations", "sem_seg_file_name", "depth_file_name")}
    assert all(70 < c < 130 for c in counts.values()), counts
    assert out == simulate_partial_labels(list(reversed(records(300))), tasks, "one_per_image", [], 3)[::-1]
    assert out != simulate_partial_labels(records(300), tasks, "one_per_image", [], seed=4)
    assert all(r["file_name"] == f"{i}.png" for i, r in enumerate(out))


def test_labelled_fraction_per_task():
    out = simulate_partial_labels(records(400), ("sem_seg", "depth"), "fraction", [1.0, 0.25], seed=0)
    assert all("sem_seg_file_name" in r for r in out)
    assert 70 < sum("depth_file_name" in r for r in out) < 130
    with pytest.raises(STAConfigError, match="FRACTIONS"):
        simulate_partial_labels(records(2), ("sem_seg", "depth"), "fraction", [1.0], seed=0)
    with pytest.raises(STAConfigError, match="share their labels"):
        simulate_partial_labels(records(2), ("det", "mask"), "fraction", [1.0, 0.5], seed=0)


def test_trainer_loader_drops_labels_as_configured(tmp_path):
    from detectron2.data import DatasetCatalog, MetadataCatalog

    from sta_d2 import STATrainer
    from sta_d2.data import training_dataset_dicts
    from sta_d2.data.datasets import register_nyuv2_13
    from sta_d2.data.synthetic import generate_nyuv2_13

    generate_nyuv2_13(str(tmp_path / "nyu"), num_train=6, num_val=0)
    name = "sta_test_partial_nyu"
    register_nyuv2_13(name, str(tmp_path / "nyu" / "train"))
    try:
        cfg = dense_cfg(tasks=("sem_seg", "depth", "normal"))
        cfg.DATASETS.TRAIN = (name,)
        cfg.DATALOADER.NUM_WORKERS, cfg.SOLVER.IMS_PER_BATCH = 0, 6
        cfg.STA.PARTIAL_LABELS.MODE = "one_per_image"
        dataset = training_dataset_dicts(cfg, ["sem_seg", "depth", "normal"])
        batch = next(iter(STATrainer.build_train_loader(cfg, dataset)))
    finally:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    assert [sum(t in x for t in ("sem_seg", "depth", "normal")) for x in batch] == [1] * 6


@pytest.mark.parametrize("suffix", [".pth", ".npy", ".csv"])
def test_availability_file_of_the_partial_label_papers(tmp_path, suffix):
    """An N x T 0/1 matrix in dataset order, e.g. a torch file with a labels_weights tensor over
    sem_seg, depth and normal (MTPSL / JTR "onelabel"), read for a sem_seg + depth model."""
    import numpy as np

    from sta_d2.data.partial_labels import apply_availability, read_availability

    matrix = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0]])
    path = tmp_path / f"onelabel{suffix}"
    if suffix == ".pth":
        torch.save({"labels_weights": torch.tensor(matrix, dtype=torch.float32)}, path)
    elif suffix == ".npy":
        np.save(path, matrix)
    else:
        np.savetxt(path, matrix, delimiter=",", fmt="%d")
    available = read_availability(str(path), 4, ["sem_seg", "depth"], ["sem_seg", "depth", "normal"])
    assert available.tolist() == [[True, False], [False, True], [False, False], [True, True]]
    records = [{"dataset_index": i, "file_name": f"{i}.npy", "sem_seg_file_name": "s", "depth_file_name": "d"}
               for i in (3, 0, 2, 1)]  # any order: rows go by dataset index
    kept = apply_availability(records, ["sem_seg", "depth"], available, "dataset_index")
    assert [sorted(k for k in r if k.endswith("_file_name") and k != "file_name") for r in kept] == [
        ["depth_file_name", "sem_seg_file_name"], ["sem_seg_file_name"], [], ["depth_file_name"]]


def test_availability_file_errors_name_the_file_and_key(tmp_path):
    import numpy as np

    from sta_d2.data.partial_labels import read_availability

    path = tmp_path / "labels.npy"
    np.save(path, np.ones((3, 2)))
    with pytest.raises(ValueError, match=r"labels\.npy.*shape \(3, 2\), expected \(4, 2\)"):
        read_availability(str(path), 4, ["sem_seg", "depth"])
    np.save(path, np.full((4, 2), 0.5))
    with pytest.raises(ValueError, match="labels.npy.*other than 0 and 1"):
        read_availability(str(path), 4, ["sem_seg", "depth"])
    np.save(path, np.ones((4, 2)))
    with pytest.raises(STAConfigError, match="FILE_TASKS.*lack the model's task"):
        read_availability(str(path), 4, ["sem_seg", "depth"], ["sem_seg", "normal"])
    with pytest.raises(FileNotFoundError, match="cfg.STA.PARTIAL_LABELS.FILE = .*nope.pth"):
        read_availability(str(tmp_path / "nope.pth"), 4, ["sem_seg"])
    cfg = dense_cfg(tasks=("sem_seg", "depth"))
    cfg.STA.PARTIAL_LABELS.MODE = "file"
    from sta_d2 import validate_sta_config

    with pytest.raises(STAConfigError, match=r"^cfg\.STA\.PARTIAL_LABELS\.FILE = ''.*MODE = 'file'"):
        validate_sta_config(cfg)


def test_trainer_reads_the_availability_file(tmp_path):
    import numpy as np
    from detectron2.data import DatasetCatalog, MetadataCatalog

    from sta_d2.data import training_dataset_dicts
    from sta_d2.data.datasets import register_nyuv2_13
    from sta_d2.data.synthetic import generate_nyuv2_13

    generate_nyuv2_13(str(tmp_path / "nyu"), num_train=4, num_val=0)
    name = "sta_test_availability_nyu"
    register_nyuv2_13(name, str(tmp_path / "nyu" / "train"))
    torch.save({"labels_weights": torch.tensor([[1, 0, 1], [0, 1, 0], [1, 1, 1], [0, 1, 1]])}, tmp_path / "w.pth")
    try:
        cfg = dense_cfg(tasks=("sem_seg", "depth"))
        cfg.DATASETS.TRAIN = (name,)
        cfg.STA.PARTIAL_LABELS.MODE, cfg.STA.PARTIAL_LABELS.FILE = "file", str(tmp_path / "w.pth")
        cfg.STA.PARTIAL_LABELS.FILE_TASKS = ["sem_seg", "depth", "normal"]
        dataset = training_dataset_dicts(cfg, ["sem_seg", "depth"])
    finally:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    labelled = [("sem_seg_file_name" in d, "depth_file_name" in d) for d in sorted(dataset, key=lambda d: d["dataset_index"])]
    assert labelled == [(True, False), (False, True), (True, True), (False, True)]
    assert np.array_equal([d["dataset_index"] for d in sorted(dataset, key=lambda d: d["dataset_index"])], range(4))
