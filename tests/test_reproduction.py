"""Reproducing the paper: the delta_m conventions on hand-worked values, the paper's tables
recomputed from their own rows, every table row mapped to a config, and a whole table run end to
end in smoke mode."""
import csv
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sta_d2.evaluation import multi_task_gain
from sta_d2.reproduction import runs
from sta_d2.reproduction.check import check_report, recompute_paper_delta_m
from sta_d2.reproduction.paper_tables import TABLES

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"

# two tasks, one metric each, and a task with two metrics
RESULTS = {"depth": {"rmse": 0.6, "abs_err": 0.3}, "sem_seg": {"mIoU": 50.0}}
BASELINES = {"depth": {"rmse": 0.5, "abs_err": 0.4}, "sem_seg": {"mIoU": 40.0}}


def test_paper_convention_is_the_mean_raw_signed_difference():
    # depth: -(0.6 - 0.5) = -0.1; sem_seg: 50 - 40 = 10 -> (10 - 0.1) / 2
    gain = multi_task_gain(RESULTS, BASELINES, ["depth/rmse", "sem_seg/mIoU"], convention="paper")
    assert gain == pytest.approx(4.95)
    # the paper's Table 1, ISTA + Uncertainty: ((0.747 - 0.734) + (56.03 - 54.71)) / 2
    table1 = multi_task_gain({"depth": {"rmse": 0.734}, "sem_seg": {"mIoU": 56.03}},
                             {"depth": {"rmse": 0.747}, "sem_seg": {"mIoU": 54.71}}, convention="paper")
    assert table1 == pytest.approx(0.6665)


def test_relative_convention_averages_per_task_first():
    # depth: rmse -20 %, abs_err +25 % -> 2.5 %; sem_seg: +25 % -> (2.5 + 25) / 2
    assert multi_task_gain(RESULTS, BASELINES, convention="relative") == pytest.approx(13.75)
    assert multi_task_gain(RESULTS, BASELINES) == pytest.approx(13.75)  # the default


def test_flat_convention_averages_over_all_metrics():
    # (-20 + 25 + 25) / 3
    assert multi_task_gain(RESULTS, BASELINES, convention="flat") == pytest.approx(10.0)


def test_conventions_agree_in_sign_and_an_unknown_one_is_refused():
    worse = {"depth": {"rmse": 0.7, "abs_err": 0.5}, "sem_seg": {"mIoU": 30.0}}
    assert all(multi_task_gain(worse, BASELINES, convention=c) < 0 for c in ("paper", "relative", "flat"))
    with pytest.raises(ValueError, match="convention 'mtl'"):
        multi_task_gain(RESULTS, BASELINES, convention="mtl")


def test_every_dense_row_of_tables_1_2_3_5_6_7_recomputes_within_0_01():
    rows = [r for r in recompute_paper_delta_m() if r.table in (1, 2, 3, 5, 6, 7)]
    assert len(rows) == 12 + 9 + 10 + 8 + 5 + 6
    worst = max(rows, key=lambda r: r.deviation)
    assert worst.deviation <= 0.01, (worst.table, worst.row.method, worst.values["paper"], worst.row.delta_m)


def test_mask_rcnn_rows_are_reported_honestly():
    coco = [r for r in recompute_paper_delta_m() if r.table == 4 and r.section.dataset == "COCO"]
    assert max(r.deviation for r in coco) <= 0.01
    cityscapes = [r for r in recompute_paper_delta_m() if r.table == 4 and r.section.dataset == "Cityscapes"]
    assert not cityscapes[0].section.printed_delta_m_fits
    assert all(abs(v - r.row.delta_m) > 0.5 for r in cityscapes for v in r.values.values())
    report = check_report()
    assert "Table 4 (Cityscapes" in report and "does NOT fit" in report
    assert "STA: printed +4.43; paper +1.68, relative +3.16, flat +3.16" in report


def test_every_row_names_an_existing_config_and_runs_once_per_seed(tmp_path):
    for number in TABLES:
        configs = runs.table_configs(number)
        assert len(configs) == len(set(configs))
        assert all((CONFIGS / c).is_file() for c in configs), [c for c in configs if not (CONFIGS / c).is_file()]
        planned = runs.table_runs(number, seeds=[0, 1], output=str(tmp_path))
        assert len(planned) == 2 * len(configs) and len({r.output_dir for r in planned}) == len(planned)


def test_smoke_keeps_each_rows_step_ratio_to_full_task():
    ft = dict(zip(*[iter(runs.smoke_overrides("NYUv2-13/segnet_full.yaml", str(CONFIGS)))] * 2))
    ista = dict(zip(*[iter(runs.smoke_overrides("NYUv2-13/segnet_ista.yaml", str(CONFIGS)))] * 2))
    assert int(ista["SOLVER.MAX_ITER"]) == 2 * int(ft["SOLVER.MAX_ITER"]) == 2 * runs.SMOKE_STEPS


@pytest.mark.slow  # tools/reproduce.py in a subprocess
def test_check_paper_command():
    out = subprocess.run([sys.executable, str(ROOT / "tools/reproduce.py"), "--check-paper"],
                         capture_output=True, text=True, check=True).stdout
    assert "Largest deviation over the 52 rows that fit: 0.0095" in out


@pytest.mark.slow
def test_table_1_runs_end_to_end_in_smoke_mode(tmp_path):
    command = [sys.executable, str(ROOT / "tools/reproduce.py"), "--table", "1", "--run", "--smoke",
               "--output", str(tmp_path)]
    out = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    table = (tmp_path / "table1_smoke" / "table1.md").read_text()
    assert "GENERATED data" in table and "| ISTA+Uncertainty | 0.734 |" in table
    rows = list(csv.reader(open(tmp_path / "table1_smoke" / "table1.csv")))
    assert len(rows) == 1 + 1 + 12
    ours = [float(r[3].split()[0]) for r in rows[1:]]  # depth/rmse, ours: every run evaluated
    assert all(math.isfinite(v) for v in ours)
    assert os.path.isfile(tmp_path / "table1_smoke" / "NYUv2-13" / "segnet_ista_uw" / "seed0" / "model_final.pth")


@pytest.mark.slow  # one subprocess per configs directory, every config of every table
@pytest.mark.parametrize("directory", sorted(runs.SMOKE_DATA))
def test_every_table_config_trains_a_step(tmp_path, directory):
    configs = sorted({c for n in TABLES for c in runs.table_configs(n) if os.path.dirname(c) == directory})
    _, layout, folder, size = runs.SMOKE_DATA[directory]
    from sta_d2.data.synthetic import GENERATORS

    GENERATORS[layout][0](str(tmp_path / "datasets" / folder), 4, 2, seed=0, image_size=size)
    out = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "config_steps_worker.py"), str(CONFIGS), str(tmp_path / "out"), *configs],
        env={**os.environ, "DETECTRON2_DATASETS": str(tmp_path / "datasets")}, capture_output=True, text=True,
        cwd=ROOT, timeout=1200)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]
    assert out.stdout.count("trained ") == len(configs)
