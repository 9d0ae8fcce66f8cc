"""The dense paper configs train a few ISTA steps and evaluate, through tools/train_net.py, on
generated data in each real layout (models shrunk only where they would be slow)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sta_d2.data.synthetic import generate_cityscapes, generate_nyud_mt, generate_nyuv2_13

pytestmark = pytest.mark.slow  # each test trains through tools/train_net.py in a subprocess

REPO = Path(__file__).parents[1]
RUN = ["SOLVER.IMS_PER_BATCH", "2", "SOLVER.MAX_ITER", "4", "DATALOADER.NUM_WORKERS", "0",
       "MODEL.WEIGHTS", "", "MODEL.DEVICE", "cpu", "TEST.EVAL_PERIOD", "0"]
SETTINGS = {
    "NYUv2-13-3tasks/segnet_3tasks_ista.yaml": (  # with the flat delta_m against its baseline file
        lambda root: generate_nyuv2_13(str(root / "nyuv2"), 2, 2),
        ["MODEL.SEGNET.WIDTHS", "[16, 32]", "MODEL.SEGNET.NUM_CONVS", "[1, 1]"],
        {"sem_seg/mIoU", "depth/abs_err", "normal/median", "delta_m/delta_m"},
    ),
    "NYUv2-40/deeplab_R_50_ista.yaml": (
        lambda root: generate_nyud_mt(str(root / "NYUD_MT"), 2, 2),
        [],
        {"sem_seg/mIoU", "depth/rmse"},
    ),
    "Cityscapes-Dense/deeplab_R_50_ista.yaml": (
        lambda root: generate_cityscapes(str(root / "cityscapes"), 2, 2),
        ["INPUT.DENSE.SIZE", "[64, 128]"],
        {"sem_seg/mIoU", "disparity/abs_err"},
    ),
}


@pytest.mark.parametrize("config", sorted(SETTINGS))
def test_dense_config_trains_and_evaluates(config, tmp_path):
    generate, overrides, metrics = SETTINGS[config]
    generate(tmp_path / "datasets")
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, str(REPO / "tools/train_net.py"), "--config-file", str(REPO / "configs" / config),
         *RUN, *overrides, "OUTPUT_DIR", str(out)],
        env={**os.environ, "DETECTRON2_DATASETS": str(tmp_path / "datasets")},
        capture_output=True, text=True, timeout=600, cwd=REPO,
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    rows = [json.loads(line) for line in open(out / "metrics.json")]
    assert max(r["iteration"] for r in rows if "total_loss" in r) == 3
    assert metrics <= set(rows[-1])
    assert any(key.startswith("allocated/") for row in rows for key in row)
