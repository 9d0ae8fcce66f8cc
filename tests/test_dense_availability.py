"""Dense datasets that declare which tasks each image is labelled for: strict and partially
labelled loading, the extra depth-only NYUv2 splits, and training and evaluation on them."""
import json
import logging
import re
import shutil

import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog

from conftest import dense_cfg, short_run
from sta_d2 import STATrainer
from sta_d2.data import DenseDatasetMapper
from sta_d2.data.datasets import (
    load_cityscapes_depth_seg,
    load_cityscapes_npy,
    load_nyud_mt,
    load_nyuv2_13,
    register_all_nyuv2,
    register_nyuv2_13,
)
from sta_d2.data.datasets import dense
from sta_d2.data.synthetic import (
    generate_cityscapes,
    generate_cityscapes_npy,
    generate_nyud_mt,
    generate_nyuv2_13,
)
from sta_d2.data.synthetic.cli import main

SIZE = (24, 32)
NYUV2_NAMES = [f"nyuv2_{c}_{s}" for c in (13, 40) for s in ("train", "val", "train_extra")]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    """NYUv2 (2 fully labelled train images, 4 depth-only extra ones) in both layouts, and the
    Cityscapes layouts."""
    root = tmp_path_factory.mktemp("availability")
    generate_nyuv2_13(str(root / "nyuv2"), 2, 1, image_size=SIZE, seed=1, num_train_extra=4)
    generate_nyud_mt(str(root / "NYUD_MT"), 2, 1, image_size=SIZE, seed=2, num_train_extra=3)
    generate_cityscapes(str(root / "cityscapes"), 2, 1, image_size=(32, 64), seed=3)
    generate_cityscapes_npy(str(root / "cityscapes_npy"), 3, 0, image_size=(16, 32), seed=4)
    return root


def labelled(records, tasks=("sem_seg", "depth", "normal", "disparity")):
    """{task: number of records labelled for it}."""
    return {t: sum(f"{t}_file_name" in r for r in records) for t in tasks}


def test_generated_extra_splits_are_depth_only(data_root):
    extra = data_root / "nyuv2" / "train_extra"
    assert sorted(p.name for p in extra.iterdir()) == ["depth", "image"]
    assert sorted(p.name for p in (extra / "depth").iterdir()) == [f"{i}.npy" for i in range(4)]
    assert np.load(extra / "depth" / "3.npy").shape == (*SIZE, 1)
    root = data_root / "NYUD_MT"
    ids = (root / "gt_sets" / "train_extra.txt").read_text().split()
    assert len(ids) == 3 and not set(ids) & set((root / "gt_sets" / "train.txt").read_text().split())
    for image_id in ids:
        assert (root / "images" / f"{image_id}.jpg").is_file()
        assert (root / "depth" / f"{image_id}.npy").is_file()
        assert not (root / "segmentation" / f"{image_id}.png").exists()
        assert not (root / "normals" / f"{image_id}.npy").exists()


def test_generator_without_extra_images_writes_no_extra_split(tmp_path):
    main(["nyuv2_13", "--root", str(tmp_path / "a"), "--num-train", "1", "--num-val", "0",
          "--image-size", "8", "12"])
    assert not (tmp_path / "a" / "train_extra").exists()
    main(["nyud_mt", "--root", str(tmp_path / "b"), "--num-train", "1", "--num-val", "0",
          "--image-size", "8", "12", "--num-train-extra", "2"])
    assert len((tmp_path / "b" / "gt_sets" / "train_extra.txt").read_text().split()) == 2
    with pytest.raises(SystemExit):
        main(["coco", "--root", str(tmp_path / "c"), "--num-train-extra", "1"])


# ---------------------------------------------------------------- strict (default) loading


def test_strict_loading_names_the_missing_file(data_root, copy_of):
    with pytest.raises(FileNotFoundError, match=re.escape(
            str(data_root / "nyuv2" / "train_extra" / "label")) + " does not exist"):
        load_nyuv2_13(str(data_root / "nyuv2" / "train_extra"))
    split = copy_of("nyuv2") / "train"
    (split / "label" / "1.npy").unlink()
    with pytest.raises(FileNotFoundError, match=re.escape(str(split / "label" / "1.npy"))):
        load_nyuv2_13(str(split))
    extra_id = (data_root / "NYUD_MT" / "gt_sets" / "train_extra.txt").read_text().split()[0]
    with pytest.raises(FileNotFoundError, match=re.escape(
            str(data_root / "NYUD_MT" / "segmentation" / f"{extra_id}.png")) + ".*train_extra.txt"):
        load_nyud_mt(str(data_root / "NYUD_MT"), "train_extra")


# ---------------------------------------------------------------- partially labelled loading


def test_partial_mtan_split_has_only_the_labelled_tasks_and_logs_counts(copy_of, caplog):
    split = copy_of("nyuv2") / "train_extra"
    shutil.copytree(split.parent / "train" / "label", split / "label")  # images 0 and 1
    with caplog.at_level(logging.INFO, logger=dense.__name__):
        records = load_nyuv2_13(str(split), partially_labelled=True)
    assert [r["image_id"] for r in records] == ["0", "1", "2", "3"]
    assert labelled(records) == {"sem_seg": 2, "depth": 4, "normal": 0, "disparity": 0}
    assert [("sem_seg_file_name" in r) for r in records] == [True, True, False, False]
    assert f"{split}: 4 images, labelled for sem_seg: 2, depth: 4, normal: 0" in caplog.text
    out = DenseDatasetMapper(is_train=False)(records[3])
    assert set(out) & {"sem_seg", "depth", "normal"} == {"depth"}
    assert out["depth"].shape == (1, *SIZE)


def test_partial_loading_still_rejects_orphans_and_unlabelled_splits(copy_of):
    split = copy_of("nyuv2") / "train_extra"
    shutil.copy(split / "depth" / "0.npy", split / "depth" / "7.npy")
    with pytest.raises(FileNotFoundError, match=r"image .*7\.npy of .*depth.7\.npy is missing"):
        load_nyuv2_13(str(split), partially_labelled=True)
    shutil.rmtree(split / "depth")
    with pytest.raises(FileNotFoundError, match=re.escape(str(split)) + ": none of its 4 images"):
        load_nyuv2_13(str(split), partially_labelled=True)
    shutil.rmtree(split / "image")
    with pytest.raises(FileNotFoundError, match=re.escape(str(split / "image"))):
        load_nyuv2_13(str(split), partially_labelled=True)


def test_partial_nyud_mt_split(data_root, copy_of, caplog):
    with caplog.at_level(logging.INFO, logger=dense.__name__):
        records = load_nyud_mt(str(data_root / "NYUD_MT"), "train_extra", partially_labelled=True)
    assert labelled(records) == {"sem_seg": 0, "depth": 3, "normal": 0, "disparity": 0}
    assert "train_extra.txt: 3 images, labelled for sem_seg: 0, depth: 3, normal: 0" in caplog.text
    root = copy_of("NYUD_MT")
    ids = (root / "gt_sets" / "train.txt").read_text().split()
    (root / "normals" / f"{ids[0]}.npy").unlink()
    records = load_nyud_mt(str(root), "train", partially_labelled=True)
    assert [("normal_file_name" in r) for r in records] == [False, True]
    assert labelled(records)["sem_seg"] == 2
    (root / "images" / f"{ids[1]}.jpg").unlink()  # an image is never optional
    with pytest.raises(FileNotFoundError, match=re.escape(f"{ids[1]}.jpg") + ".*train.txt"):
        load_nyud_mt(str(root), "train", partially_labelled=True)


def test_partial_cityscapes_layouts(copy_of):
    root = copy_of("cityscapes")
    record = load_cityscapes_depth_seg(str(root), "train")[0]
    sem_seg = record["sem_seg_file_name"]
    shutil.move(sem_seg, sem_seg + ".bak")
    with pytest.raises(FileNotFoundError, match=re.escape(sem_seg) + ".*csCreateTrainIdLabelImgs"):
        load_cityscapes_depth_seg(str(root), "train")
    records = load_cityscapes_depth_seg(str(root), "train", partially_labelled=True)
    assert labelled(records, ("sem_seg", "disparity")) == {"sem_seg": 1, "disparity": 2}
    assert all("camera_file_name" in r for r in records)
    shutil.rmtree(root / "disparity" / "train")  # no disparity, hence no camera needed
    records = load_cityscapes_depth_seg(str(root), "train", partially_labelled=True)
    assert labelled(records, ("sem_seg", "disparity")) == {"sem_seg": 1, "disparity": 0}
    assert not any("camera_file_name" in r for r in records)

    split = copy_of("cityscapes_npy") / "train"
    (split / "depth" / "2.npy").unlink()
    shutil.rmtree(split / "label_19")
    records = load_cityscapes_npy(str(split), partially_labelled=True)
    assert labelled(records, ("sem_seg", "disparity")) == {"sem_seg": 0, "disparity": 2}
    with pytest.raises(FileNotFoundError, match=re.escape(str(split / "label_19"))):
        load_cityscapes_npy(str(split))


# ---------------------------------------------------------------- registration


@pytest.fixture
def nyuv2_at(data_root, reregister):
    reregister(str(data_root), NYUV2_NAMES, register_all_nyuv2)


def test_extra_splits_are_registered_as_partially_labelled(nyuv2_at):
    for name, count in (("nyuv2_13_train_extra", 4), ("nyuv2_40_train_extra", 3)):
        meta = MetadataCatalog.get(name)
        assert meta.partially_labelled and meta.evaluator_type == "dense"
        assert meta.dense_tasks == ("sem_seg", "depth", "normal")
        records = DatasetCatalog.get(name)
        assert labelled(records) == {"sem_seg": 0, "depth": count, "normal": 0, "disparity": 0}
    assert MetadataCatalog.get("nyuv2_13_train").partially_labelled is False
    assert len(MetadataCatalog.get("nyuv2_13_train").stuff_classes) == 13
    assert len(MetadataCatalog.get("nyuv2_40_train_extra").stuff_classes) == 40


# ---------------------------------------------------------------- training and evaluation


def segnet_cfg(out_dir, policy, max_iter):
    cfg = short_run(dense_cfg("segnet"), out_dir, policy, max_iter, seed=5)
    cfg.MODEL.DENSE.NUM_CLASSES = 13
    cfg.MODEL.PIXEL_MEAN, cfg.MODEL.PIXEL_STD = [0.0, 0.0, 0.0], [255.0, 255.0, 255.0]
    cfg.SOLVER.BASE_LR = 1e-3
    return cfg


@pytest.mark.parametrize("policy, max_iter", [("sta", 4), ("ista", 9)])
def test_depth_only_images_are_only_allocated_depth(nyuv2_at, tmp_path, policy, max_iter):
    cfg = segnet_cfg(tmp_path, policy, max_iter)
    cfg.DATASETS.TRAIN = ("nyuv2_13_train", "nyuv2_13_train_extra")
    trainer = STATrainer(cfg)
    steps = []
    next_step = trainer._trainer.policy.next_step

    def recording_next_step(next_batch, availability=None):
        batch, assignment = next_step(next_batch, availability)
        steps.append((batch, assignment))
        return batch, assignment

    trainer._trainer.policy.next_step = recording_next_step
    trainer.resume_or_load(resume=False)
    trainer.train()

    tasks = trainer.model.tasks
    assert len(steps) == max_iter
    extra_allocations = []
    for batch, assignment in steps:
        for x, row in zip(batch, assignment.mask.tolist()):
            allocated = {t for t, on in zip(tasks, row) if on}
            assert allocated <= {t for t in tasks if t in x}  # only labelled tasks
            if "train_extra" in x["file_name"]:
                extra_allocations.append(allocated)
    # the depth-only images took part and were allocated depth and nothing else
    assert {"depth"} in extra_allocations
    assert all(a <= {"depth"} for a in extra_allocations)
    if policy == "sta":  # one task per image among the labelled ones
        assert all(a == {"depth"} for a in extra_allocations)
    # what the trainer logs: allocated/<task> per step, depth-only images counted under depth
    logged = {t: [v for v, _ in trainer.storage.history(f"allocated/{t}").values()] for t in tasks}
    assert logged == {t: [a.counts()[t] for _, a in steps] for t in tasks}
    full_images = sum("train_extra" not in x["file_name"] for batch, _ in steps for x in batch)
    assert sum(logged["sem_seg"]) + sum(logged["normal"]) <= full_images
    assert sum(logged["depth"]) >= sum(a == {"depth"} for a in extra_allocations)


def test_evaluation_scores_each_task_on_its_labelled_images(copy_of, tmp_path, new_name):
    split = copy_of("nyuv2") / "train_extra"
    shutil.copytree(split.parent / "train" / "label", split / "label")  # images 0 and 1
    (split / "normal").mkdir()
    shutil.copy(split.parent / "train" / "normal" / "0.npy", split / "normal" / "1.npy")
    name = new_name()
    register_nyuv2_13(name, str(split), partially_labelled=True)
    cfg = segnet_cfg(tmp_path, "full", 1)
    cfg.DATASETS.TEST = (name,)
    torch.manual_seed(0)
    results = STATrainer.test(cfg, STATrainer.build_model(cfg))
    report = json.loads((tmp_path / "inference" / "dense_evaluation.json").read_text())
    assert report["images"] == {"sem_seg": 2, "depth": 4, "normal": 1}
    for task in ("sem_seg", "depth", "normal"):
        assert all(np.isfinite(v) for k, v in results[task].items() if not k.startswith("IoU-"))
