"""tools/report.py and sta_d2.reporting.run_report on run folders whose metrics.json is written as
detectron2's JSONWriter writes it (one JSON dict per line, keys sorted)."""
import csv
import json
import math
import os
import subprocess
import sys

import pytest
from PIL import Image

from sta_d2.evaluation import multi_task_gain
from sta_d2.reporting.run_report import DPI, PANEL_SIZE, load_run, write_report

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def write_run(root, name, rows):
    """A run folder ``root/name`` with ``rows`` as its metrics.json."""
    path = os.path.join(root, name)
    os.makedirs(path)
    with open(os.path.join(path, "metrics.json"), "w") as f:
        for row in rows:
            f.write(json.dumps(row, sort_keys=True) + "\n")
    return path


def training_row(iteration, **losses):
    """A training row of sta_d2's trainer: detectron2's scalars plus per-task ones."""
    row = {"iteration": iteration, "lr": 0.01, "time": 0.5, "total_loss": sum(losses.values()),
           "grad/mean_pairwise_cosine": 0.1}
    for task, loss in losses.items():
        row.update({f"task_loss/{task}": loss, f"task_weight/{task}": 1.0, f"allocated/{task}": 4.0})
    return row


SEG = {"mIoU": 40.0, "pixAcc": 70.0}
DEPTH = {"abs_err": 0.5, "rel_err": 0.2, "rmse": 0.7}
ISTA = {"sem_seg": {"mIoU": 42.0, "pixAcc": 69.0}, "depth": {"abs_err": 0.45, "rel_err": 0.21, "rmse": 0.6}}


def evaluation_row(iteration, results, **extra):
    row = {"iteration": iteration, **extra}
    row.update({f"{task}/{metric}": v for task, metrics in results.items() for metric, v in metrics.items()})
    return row


@pytest.fixture
def dense_runs(tmp_path):
    """Single-task sem_seg and depth runs, an ISTA run (an earlier evaluation, a logged delta_m and
    per-class IoUs) and an FT run that reports no depth rel_err."""
    root = str(tmp_path / "runs")
    sem_seg = write_run(root, "sem_seg", [
        training_row(19, sem_seg=2.0), training_row(39, sem_seg=1.0),
        evaluation_row(40, {"sem_seg": {**SEG, "IoU-wall": 80.0, "IoU-tv": math.nan}}),
    ])
    depth = write_run(root, "depth", [training_row(19, depth=0.9), evaluation_row(40, {"depth": DEPTH})])
    ista = write_run(root, "ista", [
        training_row(19, sem_seg=2.5, depth=1.0),
        evaluation_row(39, {"sem_seg": {"mIoU": 10.0, "pixAcc": 20.0}, "depth": {"abs_err": 2.0}}),
        # the final evaluation shares its row with the training scalars of the last iteration
        {**training_row(79, sem_seg=1.5, depth=0.6), **evaluation_row(79, ISTA, **{"delta_m/delta_m": 99.0})},
    ])
    full = write_run(root, "full", [
        training_row(19, sem_seg=2.2, depth=0.8),
        evaluation_row(40, {"sem_seg": {"mIoU": 41.0, "pixAcc": 71.0}, "depth": {"abs_err": 0.55}}),
    ])
    return {"sem_seg": sem_seg, "depth": depth, "ista": ista, "full": full, "out": str(tmp_path / "report")}


def read_markdown_table(path):
    """The header and rows of the markdown table at the top of ``path``."""
    with open(path) as f:
        lines = [line for line in f.read().split("\n\n")[0].splitlines()]
    split = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]
    return split[0], {row[0]: dict(zip(split[0], row)) for row in split[2:]}


def read_csv(path):
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    return rows[0], {row[0]: dict(zip(rows[0], row)) for row in rows[1:]}


def test_dense_table_values_arrows_delta_m_and_missing(dense_runs):
    paths = write_report([dense_runs["full"], dense_runs["ista"]], dense_runs["out"],
                         baselines=[dense_runs["sem_seg"], dense_runs["depth"]])
    assert sorted(paths) == ["csv", "losses", "markdown"]
    header, rows = read_markdown_table(paths["markdown"])
    assert header == ["method", "sem_seg/mIoU ↑", "sem_seg/pixAcc ↑", "depth/abs_err ↓", "depth/rel_err ↓",
                      "Δm (relative, %) ↑"]
    assert list(rows) == ["single-task", "full", "ista"]
    baselines = {"sem_seg": SEG, "depth": DEPTH}
    metrics = ["sem_seg/mIoU", "sem_seg/pixAcc", "depth/abs_err", "depth/rel_err"]
    gain = multi_task_gain(ISTA, baselines, metrics)
    assert gain == pytest.approx(((2 / 40 - 1 / 70) / 2 + (0.05 / 0.5 - 0.01 / 0.2) / 2) / 2 * 100)
    # the last evaluation row, not the earlier one nor the run's own delta_m
    assert rows["ista"] == {"method": "ista", "sem_seg/mIoU ↑": "42.00", "sem_seg/pixAcc ↑": "69.00",
                            "depth/abs_err ↓": "0.4500", "depth/rel_err ↓": "0.2100", "Δm (relative, %) ↑": f"{gain:+.2f}"}
    assert rows["single-task"]["depth/abs_err ↓"] == "0.5000" and rows["single-task"]["Δm (relative, %) ↑"] == "+0.00"
    # FT has no rel_err: "–", and no Δm (over fewer metrics it would not compare)
    assert rows["full"]["depth/rel_err ↓"] == "–" and rows["full"]["Δm (relative, %) ↑"] == "–"
    assert rows["full"]["depth/abs_err ↓"] == "0.5500"
    with open(paths["markdown"]) as f:
        text = f.read()
    assert "over sem_seg/mIoU, sem_seg/pixAcc, depth/abs_err, depth/rel_err" in text
    assert f"ista = {dense_runs['ista']} (iteration 79)" in text

    csv_header, csv_rows = read_csv(paths["csv"])
    assert csv_header == header
    assert float(csv_rows["ista"]["Δm (relative, %) ↑"]) == gain
    assert float(csv_rows["ista"]["depth/abs_err ↓"]) == 0.45
    assert csv_rows["full"]["depth/rel_err ↓"] == "" and csv_rows["full"]["Δm (relative, %) ↑"] == ""

    with Image.open(paths["losses"]) as png:  # two panels: sem_seg and depth
        assert png.format == "PNG"
        assert png.size == (round(2 * PANEL_SIZE[0] * DPI), round(PANEL_SIZE[1] * DPI))


def test_chosen_columns_delta_m_metrics_and_baseline_json(dense_runs, tmp_path):
    baselines = tmp_path / "baselines.json"
    baselines.write_text(json.dumps({"sem_seg": SEG, "depth": DEPTH}))
    paths = write_report([dense_runs["ista"]], dense_runs["out"], baselines=[str(baselines)], names=["ISTA"],
                         metrics=["sem_seg/mIoU", "depth/rmse"], delta_m_metrics=["sem_seg/mIoU", "depth/abs_err"])
    header, rows = read_markdown_table(paths["markdown"])
    assert header == ["method", "sem_seg/mIoU ↑", "depth/rmse ↓", "Δm (relative, %) ↑"]
    gain = multi_task_gain(ISTA, {"sem_seg": SEG, "depth": DEPTH}, ["sem_seg/mIoU", "depth/abs_err"])
    assert rows["ISTA"]["Δm (relative, %) ↑"] == f"{gain:+.2f}" and rows["ISTA"]["depth/rmse ↓"] == "0.6000"
    # no baseline run folder, so only ISTA's losses are plotted
    assert os.path.isfile(paths["losses"])
    with pytest.raises(ValueError, match="no single-task baseline"):
        write_report([dense_runs["ista"]], dense_runs["out"], baselines=[str(baselines)],
                     delta_m_metrics=["depth/delta1"])


@pytest.mark.parametrize("convention, header", [("paper", "Δm (paper, raw) ↑"), ("flat", "Δm (flat, %) ↑")])
def test_delta_m_convention_is_chosen_and_named(dense_runs, tmp_path, convention, header):
    baselines = tmp_path / "baselines.json"
    baselines.write_text(json.dumps({"sem_seg": SEG, "depth": DEPTH}))
    metrics = ["sem_seg/mIoU", "depth/rmse"]
    paths = write_report([dense_runs["ista"]], str(tmp_path / "r"), baselines=[str(baselines)], names=["ISTA"],
                         metrics=metrics, delta_m_convention=convention)
    columns, rows = read_markdown_table(paths["markdown"])
    gain = multi_task_gain(ISTA, {"sem_seg": SEG, "depth": DEPTH}, metrics, convention=convention)
    assert columns[-1] == header and rows["ISTA"][header] == f"{gain:+.2f}"
    assert f"the {convention!r} convention" in open(paths["markdown"]).read()


def test_rcnn_runs_adapt_columns(tmp_path):
    """Mask R-CNN (COCOEvaluator) and Panoptic FPN on Cityscapes (SemSegEvaluator as well)."""
    root = str(tmp_path)
    coco = {"AP": 30.0, "AP50": 50.0, "AP75": 31.0, "APs": 10.0, "APm": 30.0, "APl": 40.0, "AP-circle": 33.0}
    mask = write_run(root, "mask_rcnn", [
        training_row(19, det=1.2, mask=0.7), evaluation_row(99, {"bbox": coco, "segm": coco})])
    sem = {"mIoU": 55.0, "fwIoU": 70.0, "mACC": 60.0, "pACC": 80.0, "IoU-road": 90.0, "ACC-road": 95.0}
    panoptic = write_run(root, "panoptic", [
        training_row(19, det=1.0, mask=0.6, sem_seg=0.9),
        evaluation_row(99, {"bbox": {**coco, "AP": 32.0}, "segm": {**coco, "AP": 29.0}, "sem_seg": sem})])
    paths = write_report([mask, panoptic], str(tmp_path / "report"))
    header, rows = read_markdown_table(paths["markdown"])
    assert header == ["method", "sem_seg/mIoU ↑", "sem_seg/pACC ↑", "bbox/AP ↑", "bbox/AP50 ↑", "bbox/AP75 ↑",
                      "segm/AP ↑", "segm/AP50 ↑", "segm/AP75 ↑"]
    assert rows["mask_rcnn"]["sem_seg/mIoU ↑"] == "–" and rows["mask_rcnn"]["bbox/AP ↑"] == "30.00"
    assert rows["panoptic"]["bbox/AP ↑"] == "32.00" and rows["panoptic"]["segm/AP ↑"] == "29.00"
    with Image.open(paths["losses"]) as png:  # det, mask and sem_seg panels
        assert png.size == (round(3 * PANEL_SIZE[0] * DPI), round(PANEL_SIZE[1] * DPI))

    # AP improves upwards, so R-CNN runs get a Δm over the metrics with a baseline (bbox/AP here)
    baselines = tmp_path / "baselines.json"
    baselines.write_text(json.dumps({"bbox": {"AP": 31.0}}))
    paths = write_report([mask], str(tmp_path / "report"), baselines=[str(baselines)])
    header, rows = read_markdown_table(paths["markdown"])
    expected = multi_task_gain({"bbox": {"AP": 30.0}}, {"bbox": {"AP": 31.0}})
    assert header[-1] == "Δm (relative, %) ↑" and rows["mask_rcnn"]["Δm (relative, %) ↑"] == f"{expected:+.2f}" == "-3.23"
    assert rows["single-task"]["bbox/AP ↑"] == "31.00" and rows["single-task"]["segm/AP ↑"] == "–"


def test_load_run_resumed_losses_and_errors(tmp_path):
    # a resumed run appends to metrics.json and redoes iteration 39: the later value counts
    run = load_run(write_run(str(tmp_path), "resumed", [
        training_row(19, sem_seg=2.0), training_row(39, sem_seg=1.5), training_row(39, sem_seg=1.4),
        training_row(59, sem_seg=1.0), evaluation_row(59, {"sem_seg": SEG})]), name="R")
    assert run.name == "R" and run.iteration == 59 and run.results == {"sem_seg": SEG}
    assert run.losses == {"sem_seg": [(19, 2.0), (39, 1.4), (59, 1.0)]}
    untested = write_run(str(tmp_path), "untested", [training_row(19, sem_seg=2.0)])
    with pytest.raises(ValueError, match="no evaluation results"):
        load_run(untested)
    with pytest.raises(FileNotFoundError, match="OUTPUT_DIR"):
        load_run(str(tmp_path))
    one = write_run(str(tmp_path), "one", [evaluation_row(9, {"sem_seg": SEG})])
    with pytest.raises(ValueError, match="task 'sem_seg' is given by both"):
        write_report([one], str(tmp_path / "r"), baselines=[one, one])
    with pytest.raises(ValueError, match="2 names for 1 runs"):
        write_report([one], str(tmp_path / "r"), names=["a", "b"])


@pytest.mark.slow  # tools/report.py in a subprocess
def test_command_line(dense_runs):
    out = subprocess.run(
        [sys.executable, os.path.join(ROOT, "tools", "report.py"), dense_runs["full"], dense_runs["ista"],
         "--names", "FT", "ISTA", "--baselines", dense_runs["sem_seg"], dense_runs["depth"],
         "--output", dense_runs["out"]],
        capture_output=True, text=True, check=True,
    ).stdout
    gain = multi_task_gain(ISTA, {"sem_seg": SEG, "depth": DEPTH},
                           ["sem_seg/mIoU", "sem_seg/pixAcc", "depth/abs_err", "depth/rel_err"])
    assert f"| ISTA | 42.00 | 69.00 | 0.4500 | 0.2100 | {gain:+.2f} |" in out
    for name in ("report.md", "report.csv", "losses.png"):
        assert os.path.isfile(os.path.join(dense_runs["out"], name))
