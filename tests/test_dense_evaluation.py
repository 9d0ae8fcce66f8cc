"""Dense multi-task evaluation and delta_m against values worked out by hand on tiny arrays."""
import json
import logging
import math
import pickle

import pytest
import torch
from detectron2.config import CfgNode as CN
from detectron2.config import get_cfg
from detectron2.data import MetadataCatalog
from detectron2.evaluation import print_csv_format
from detectron2.evaluation.testing import flatten_results_dict

from sta_d2 import add_sta_config
from sta_d2.evaluation import (
    DenseMultiTaskEvaluator,
    build_evaluator,
    load_baselines,
    multi_task_gain,
)
from sta_d2.evaluation import dense

NAN = float("nan")
CLASSES = ["a", "b", "c", "d"]  # "d" occurs nowhere


def logits(labels, num_classes=4):
    """(C, H, W) scores whose argmax is ``labels``."""
    labels = torch.tensor(labels)
    return torch.nn.functional.one_hot(labels, num_classes).permute(2, 0, 1).float()


def run(evaluator, *batches):
    evaluator.reset()
    for inputs, outputs in batches:
        evaluator.process(inputs, outputs)
    return evaluator.evaluate()


# Image A: one ignored pixel (predicted "c", which must not count); image B.
SEG_A = ({"image_id": "A", "sem_seg": torch.tensor([[0, 0], [1, 255]])},
         {"sem_seg": logits([[0, 1], [1, 2]])})
SEG_B = ({"image_id": "B", "sem_seg": torch.tensor([[2, 2], [2, 0]])},
         {"sem_seg": logits([[2, 2], [0, 0]])})
# Confusion matrix (rows ground truth, columns prediction) of A + B over the 7 counted pixels:
#   a: [2, 1, 0]   b: [0, 1, 0]   c: [1, 0, 2]
# IoU a = 2 / (3 + 3 - 2) = 1/2, b = 1 / (1 + 2 - 1) = 1/2, c = 2 / (3 + 2 - 2) = 2/3.
SPLIT_MIOU = 100 * (1 / 2 + 1 / 2 + 2 / 3) / 3
# Per image: A has a 1/2, b 1/2 -> 1/2; B has a 1 / (1 + 2 - 1) = 1/2, c 2/3 -> 7/12.
MEAN_PER_IMAGE_MIOU = 100 * (1 / 2 + 7 / 12) / 2


def seg_evaluator(**kwargs):
    return DenseMultiTaskEvaluator("toy", ["sem_seg"], class_names=CLASSES, **kwargs)


def test_sem_seg_accumulates_one_confusion_matrix_over_the_split():
    results = run(seg_evaluator(), ([SEG_A[0]], [SEG_A[1]]), ([SEG_B[0]], [SEG_B[1]]))
    seg = results["sem_seg"]
    assert seg["mIoU"] == pytest.approx(SPLIT_MIOU)  # 55.56; class "d" left out of the mean
    assert seg["pixAcc"] == pytest.approx(100 * 5 / 7)
    assert seg["IoU-a"] == pytest.approx(50.0) and seg["IoU-c"] == pytest.approx(200 / 3)
    assert math.isnan(seg["IoU-d"])
    # one batch of both images gives the same; averaging per-image mIoU would not (54.17)
    both = run(seg_evaluator(), ([SEG_A[0], SEG_B[0]], [SEG_A[1], SEG_B[1]]))
    assert both["sem_seg"]["mIoU"] == pytest.approx(SPLIT_MIOU)
    per_image = [run(seg_evaluator(), ([i], [o]))["sem_seg"]["mIoU"] for i, o in (SEG_A, SEG_B)]
    assert per_image == pytest.approx([50.0, 100 * 7 / 12])
    assert sum(per_image) / 2 == pytest.approx(MEAN_PER_IMAGE_MIOU)
    assert abs(MEAN_PER_IMAGE_MIOU - SPLIT_MIOU) > 1


def test_sem_seg_rejects_labels_and_shapes_it_cannot_score():
    evaluator = seg_evaluator()
    with pytest.raises(ValueError, match="image 'X'.*label 7"):
        evaluator.process([{"image_id": "X", "sem_seg": torch.tensor([[7]])}],
                          [{"sem_seg": logits([[0]])}])
    with pytest.raises(ValueError, match=r"\(4, H, W\) logits"):
        evaluator.process([{"image_id": "X", "sem_seg": torch.tensor([[0]])}],
                          [{"sem_seg": torch.zeros(3, 1, 1)}])


DEPTH_GT = torch.tensor([[[1.0, 2.0, 4.0, 0.0], [1.0, 2.0, NAN, float("inf")]]])
DEPTH_PRED = torch.tensor([[[1.2, 1.0, 4.0, 3.0], [1.5, -1.0, 3.0, 9.0]]])
# 5 valid pixels (g, p): (1, 1.2) (2, 1) (4, 4) (1, 1.5) (2, -1); 0, NaN, inf ground truth skipped.
# |p - g| = 0.2, 1, 0, 0.5, 3; relative 0.2, 0.5, 0, 0.5, 1.5; ratios 1.2, 2, 1, 1.5, none (p < 0).
DEPTH_EXPECTED = {
    "abs_err": 4.7 / 5,
    "rel_err": 2.7 / 5,
    "rmse": math.sqrt((0.04 + 1 + 0 + 0.25 + 9) / 5),
    "log_rmse": math.sqrt((math.log(1.2) ** 2 + math.log(2) ** 2 + math.log(1.5) ** 2) / 4),
    "delta1": 40.0,  # 1.2 and 1
    "delta2": 60.0,  # also 1.5 < 1.5625
    "delta3": 60.0,  # 2 > 1.953125
}


def test_depth_metrics_skip_invalid_and_non_finite_ground_truth(caplog):
    evaluator = DenseMultiTaskEvaluator("toy", ["depth"])
    with caplog.at_level(logging.WARNING, logger=dense.__name__):
        results = run(evaluator, ([{"depth": DEPTH_GT}], [{"depth": DEPTH_PRED}]))
    assert list(results["depth"]) == list(DEPTH_EXPECTED)
    assert results["depth"] == pytest.approx(DEPTH_EXPECTED)
    assert "1 of 5 valid pixels have predictions <= 0" in caplog.text


def test_disparity_l1_in_pixels():
    gt = torch.tensor([[[10.0, 0.0, 20.0]]])
    pred = torch.tensor([[[12.0, 5.0, 19.0]]])
    results = run(DenseMultiTaskEvaluator("toy", ["disparity"]),
                  ([{"disparity": gt}], [{"disparity": pred}]))
    assert results["disparity"] == pytest.approx({"abs_err": 1.5, "rel_err": (0.2 + 0.05) / 2})


def normals(*vectors):
    """(3, 1, N) from N vectors."""
    return torch.tensor(vectors, dtype=torch.float32).T.unsqueeze(1)


MEDIAN_TOLERANCE = 0.0005 + 1e-9


def test_normal_angles():
    up = (0.0, 0.0, 1.0)
    # angles 0, 90, 45, atan(0.2) = 11.31 (just over 11.25), atan(0.5) = 26.57; the last pixel
    # has an all-zero ground truth and does not count; predictions need not be unit vectors
    gt = normals(up, up, up, up, up, (0.0, 0.0, 0.0))
    pred = normals((0, 0, 2), (1, 0, 0), (1, 0, 1), (0, 0.2, 1), (0, -1, 2), (1, 0, 0))
    angles = [0.0, 90.0, 45.0, 11.309932474020215, 26.56505117707799]
    results = run(DenseMultiTaskEvaluator("toy", ["normal"]),
                  ([{"normal": gt}], [{"normal": pred}]))["normal"]
    assert results["mean"] == pytest.approx(sum(angles) / 5)
    # the median is exact to half a 0.001-degree bin
    assert results["median"] == pytest.approx(26.56505117707799, abs=MEDIAN_TOLERANCE)
    assert results["within_11.25"] == pytest.approx(20.0)
    assert results["within_22.5"] == pytest.approx(40.0)
    assert results["within_30"] == pytest.approx(60.0)

    # the median runs over the pixels of all images: 0, 10, 90 (zero prediction), 100 -> 50
    image2 = ({"normal": normals(up, up)}, {"normal": normals((0, 0, 1), (0, 0, 0))})
    tilt = [(0, math.sin(math.radians(a)), math.cos(math.radians(a))) for a in (10, 100)]
    image1 = ({"normal": normals(up, up)}, {"normal": normals(*tilt)})
    results = run(DenseMultiTaskEvaluator("toy", ["normal"]),
                  ([image1[0]], [image1[1]]), ([image2[0]], [image2[1]]))["normal"]
    assert results["median"] == pytest.approx(50.0, abs=MEDIAN_TOLERANCE)
    assert results["mean"] == pytest.approx(50.0)
    assert results["within_11.25"] == pytest.approx(50.0)


def test_an_image_without_a_task_key_does_not_count_for_it(caplog):
    evaluator = DenseMultiTaskEvaluator("toy", ["sem_seg", "depth", "normal"], num_classes=4)
    labelled = {"sem_seg": SEG_A[0]["sem_seg"], "depth": DEPTH_GT}
    partial = {"sem_seg": SEG_B[0]["sem_seg"]}  # no depth: its bad depth prediction is ignored
    outputs = [{"sem_seg": SEG_A[1]["sem_seg"], "depth": DEPTH_PRED},
               {"sem_seg": SEG_B[1]["sem_seg"], "depth": torch.full((1, 2, 4), 100.0)}]
    with caplog.at_level(logging.WARNING, logger=dense.__name__):
        results = run(evaluator, ([labelled, partial], outputs))
    assert results["sem_seg"]["mIoU"] == pytest.approx(SPLIT_MIOU)
    assert "IoU-a" not in results["sem_seg"]  # no class names given
    assert results["depth"] == pytest.approx(DEPTH_EXPECTED)
    assert all(math.isnan(v) for v in results["normal"].values())
    assert "no image has normal ground truth" in caplog.text
    with pytest.raises(ValueError, match="depth of image 7: ground truth given but no prediction"):
        evaluator.process([{"image_id": 7, "depth": DEPTH_GT}], [{"sem_seg": SEG_A[1]["sem_seg"]}])


def test_processes_are_gathered_before_the_metrics(monkeypatch):
    # rank 0 saw image A, rank 1 image B: the sums are merged, not the per-rank metrics
    other = seg_evaluator()
    other.process([SEG_B[0]], [SEG_B[1]])
    monkeypatch.setattr(dense.comm, "gather",
                        lambda data, dst: [pickle.loads(pickle.dumps(data)), other._sums])
    results = run(seg_evaluator(), ([SEG_A[0]], [SEG_A[1]]))
    assert results["sem_seg"]["mIoU"] == pytest.approx(SPLIT_MIOU)
    monkeypatch.setattr(dense.comm, "is_main_process", lambda: False)
    assert run(seg_evaluator(), ([SEG_A[0]], [SEG_A[1]])) == {}


RESULTS = {"sem_seg": {"mIoU": 50.0, "pixAcc": 80.0}, "depth": {"abs_err": 0.4, "rmse": 1.0}}
BASELINES = {"sem_seg": {"mIoU": 40.0}, "depth": {"abs_err": 0.5, "rmse": 0.8},
             "normal": {"mean": 20.0}}


def test_multi_task_gain_by_hand():
    # sem_seg: mIoU +(50 - 40) / 40 = +25 % (pixAcc has no baseline)            -> +25
    # depth: abs_err -(0.4 - 0.5) / 0.5 = +20 %, rmse -(1.0 - 0.8) / 0.8 = -25 % -> -2.5
    # normal has no result and is skipped; delta_m = (25 - 2.5) / 2, tasks weigh the same
    # (a flat mean over the three metrics would give 20 / 3)
    assert multi_task_gain(RESULTS, BASELINES) == pytest.approx(11.25)
    assert multi_task_gain(RESULTS, BASELINES, []) == pytest.approx(11.25)
    assert multi_task_gain(RESULTS, BASELINES, ["sem_seg/mIoU", "depth/abs_err"]) == pytest.approx(
        (25.0 + 20.0) / 2
    )
    assert multi_task_gain(RESULTS, BASELINES, ["depth/rmse"]) == pytest.approx(-25.0)
    assert multi_task_gain(RESULTS, BASELINES, ["depth/abs_err", "depth/rmse"]) == pytest.approx(
        -2.5
    )


def test_multi_task_gain_errors(tmp_path):
    with pytest.raises(ValueError, match="'depth/mae' is not among the results"):
        multi_task_gain(RESULTS, BASELINES, ["depth/mae"])
    with pytest.raises(ValueError, match="'normal/mean' is not among the results"):
        multi_task_gain(RESULTS, BASELINES, ["normal/mean"])
    with pytest.raises(ValueError, match="'depth' is not of the form 'task/metric'"):
        multi_task_gain(RESULTS, BASELINES, ["depth"])
    with pytest.raises(ValueError, match="'sem_seg/pixAcc' has no baseline"):
        multi_task_gain(RESULTS, BASELINES, ["sem_seg/pixAcc"])
    with pytest.raises(ValueError, match="no known direction for metric 'score'"):
        multi_task_gain({"x": {"score": 1.0}}, {"x": {"score": 2.0}})
    with pytest.raises(ValueError, match="share no metric"):
        multi_task_gain(RESULTS, {"normal": {"mean": 20.0}})
    with pytest.raises(ValueError, match="depth/abs_err = 0.0 cannot be divided by"):
        multi_task_gain(RESULTS, {"depth": {"abs_err": 0.0}})
    missing = tmp_path / "missing.json"
    with pytest.raises(FileNotFoundError, match="missing.json"):
        load_baselines(str(missing))
    (tmp_path / "bad.json").write_text('{"depth": {"abs_err": "low"}}')
    with pytest.raises(ValueError, match="depth/abs_err = 'low' is not a number"):
        load_baselines(str(tmp_path / "bad.json"))


def test_evaluator_reports_delta_m_and_what_entered_it(tmp_path, caplog):
    baseline_file = tmp_path / "single_task.json"
    baseline_file.write_text(json.dumps({"sem_seg": {"mIoU": 50.0}, "depth": {"abs_err": 1.0}}))
    evaluator = DenseMultiTaskEvaluator(
        "toy", ["sem_seg", "depth"], class_names=CLASSES, output_dir=str(tmp_path / "out"),
        baselines=str(baseline_file), distributed=False,
    )
    batch = ([{**SEG_A[0], "depth": DEPTH_GT}, SEG_B[0]],
             [{**SEG_A[1], "depth": DEPTH_PRED}, SEG_B[1]])
    with caplog.at_level(logging.INFO, logger=dense.__name__):
        results = run(evaluator, batch)
    # sem_seg: (55.56 - 50) / 50 = +11.11 %; depth: -(0.94 - 1) / 1 = +6 %
    expected = ((SPLIT_MIOU - 50) / 50 * 100 + 6.0) / 2
    assert results["delta_m"] == {"delta_m": pytest.approx(expected)}
    assert "sem_seg/mIoU (baseline 50), depth/abs_err (baseline 1)" in caplog.text
    saved = json.loads((tmp_path / "out" / "dense_evaluation.json").read_text())
    assert saved["delta_m"] == {"convention": "relative", "metrics": {"sem_seg/mIoU": 50.0, "depth/abs_err": 1.0},
                                "baselines": str(baseline_file)}
    assert "delta_m = 8.5556 (relative convention, %)" in caplog.text
    assert saved["results"]["depth"]["abs_err"] == pytest.approx(0.94)
    assert saved["images"] == {"sem_seg": 2, "depth": 1}
    flat = flatten_results_dict(results)
    assert flat["depth/abs_err"] == pytest.approx(0.94) and "delta_m/delta_m" in flat
    paper = DenseMultiTaskEvaluator("toy", ["sem_seg", "depth"], class_names=CLASSES, baselines=str(baseline_file),
                                    distributed=False, delta_m_convention="paper")
    # raw differences: ((55.56 - 50) + (1 - 0.94)) / 2
    assert run(paper, batch)["delta_m"] == {"delta_m": pytest.approx((SPLIT_MIOU - 50 + 0.06) / 2)}
    print_csv_format(results)

    picked = DenseMultiTaskEvaluator("toy", ["sem_seg", "depth"], num_classes=4,
                                     baselines=BASELINES, delta_m_metrics=["depth/rmse"])
    assert run(picked, batch)["delta_m"]["delta_m"] == pytest.approx(
        -(DEPTH_EXPECTED["rmse"] - 0.8) / 0.8 * 100
    )
    # bad settings fail when the evaluator is built, before any inference
    with pytest.raises(ValueError, match="'depth/mae' is not among the results"):
        DenseMultiTaskEvaluator("toy", ["depth"], baselines=BASELINES,
                                delta_m_metrics=["depth/mae"])
    with pytest.raises(FileNotFoundError, match="nowhere.json"):
        DenseMultiTaskEvaluator("toy", ["depth"], baselines=str(tmp_path / "nowhere.json"))
    with pytest.raises(ValueError, match="without baselines"):
        DenseMultiTaskEvaluator("toy", ["depth"], delta_m_metrics=["depth/rmse"])
    with pytest.raises(ValueError, match="among"):
        DenseMultiTaskEvaluator("toy", ["depth", "surface"])


def test_build_evaluator_for_dense_datasets(tmp_path, new_name):  # noqa: F811
    name = new_name()
    MetadataCatalog.get(name).set(
        evaluator_type="dense", dense_tasks=["sem_seg", "depth"], stuff_classes=CLASSES,
        ignore_label=255,
    )
    cfg = get_cfg()
    add_sta_config(cfg)
    cfg.OUTPUT_DIR = str(tmp_path)
    evaluator = build_evaluator(cfg, name)
    assert isinstance(evaluator, DenseMultiTaskEvaluator)
    assert evaluator._tasks == ["sem_seg", "depth"] and evaluator._num_classes == 4
    assert evaluator._output_dir == str(tmp_path / "inference") and evaluator._baselines is None

    # the model's tasks win over the dataset's; baselines and metrics come from cfg.TEST.DENSE
    (tmp_path / "b.json").write_text(json.dumps({"depth": {"abs_err": 1.0, "rmse": 2.0}}))
    cfg.MODEL.DENSE = CN({"TASKS": ["depth"]})
    cfg.TEST.DENSE.BASELINES = str(tmp_path / "b.json")
    cfg.TEST.DENSE.DELTA_M_METRICS = ["depth/rmse"]
    evaluator = build_evaluator(cfg, name, "elsewhere")
    assert evaluator._tasks == ["depth"] and evaluator._delta_m_metrics == ["depth/rmse"]
    assert evaluator._output_dir == "elsewhere"
    cfg.TEST.DENSE.BASELINES = str(tmp_path / "absent.json")
    with pytest.raises(FileNotFoundError, match="absent.json"):
        build_evaluator(cfg, name)
