"""tools/train_net.py with detectron2's command-line conventions, on the CPU."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sta_d2.data.synthetic import generate_coco_shapes

pytestmark = pytest.mark.slow  # each test starts tools/train_net.py in subprocesses

REPO = Path(__file__).parents[1]
TINY = [
    "MODEL.RESNETS.DEPTH", "18", "MODEL.FPN.OUT_CHANNELS", "32", "MODEL.ROI_BOX_HEAD.FC_DIM", "64",
    "INPUT.MIN_SIZE_TRAIN", "(64,)", "INPUT.MAX_SIZE_TRAIN", "64", "INPUT.MIN_SIZE_TEST", "64",
    "INPUT.MAX_SIZE_TEST", "64", "SOLVER.IMS_PER_BATCH", "2", "SOLVER.MAX_ITER", "4",
    "SOLVER.STEPS", "()", "SOLVER.WARMUP_ITERS", "0", "DATALOADER.NUM_WORKERS", "0",
]


def train_net(tmp_path, *args):
    env = {**os.environ, "DETECTRON2_DATASETS": str(tmp_path / "datasets")}
    result = subprocess.run(
        [sys.executable, str(REPO / "tools/train_net.py"), "--config-file",
         str(REPO / "configs/Demo/shapes_mask_rcnn_ista.yaml"), *args],
        env=env, capture_output=True, text=True, timeout=600,
    )
    result.log = result.stdout + result.stderr  # detectron2 logs to stdout, errors go to stderr
    return result


def test_train_resume_and_eval_only(tmp_path):
    generate_coco_shapes(str(tmp_path / "datasets/shapes"), num_train=4, num_val=2, image_size=(64, 64))
    out = tmp_path / "out"
    first = train_net(tmp_path, *TINY, "OUTPUT_DIR", str(out), "TEST.EVAL_PERIOD", "0")
    assert first.returncode == 0, first.log[-3000:]
    assert (out / "model_final.pth").exists()
    assert "copypaste: Task: bbox" in first.log and "copypaste: Task: segm" in first.log  # the final evaluation ran

    # --resume with a larger MAX_ITER continues from iteration 4 (the override wins over the file)
    resumed = train_net(tmp_path, "--resume", *TINY, "SOLVER.MAX_ITER", "6", "OUTPUT_DIR", str(out))
    assert resumed.returncode == 0, resumed.log[-3000:]
    assert "Starting training from iteration 4" in resumed.log
    rows = [json.loads(line) for line in open(out / "metrics.json")]
    assert max(r["iteration"] for r in rows if "total_loss" in r) == 5

    evaluated = train_net(
        tmp_path, "--eval-only", *TINY, "MODEL.WEIGHTS", str(out / "model_final.pth"),
        "OUTPUT_DIR", str(tmp_path / "eval"),
    )
    assert evaluated.returncode == 0, evaluated.log[-3000:]
    assert "copypaste: Task: segm" in evaluated.log


def test_bad_override_names_the_key(tmp_path):
    result = train_net(tmp_path, "STA.POLICY", "everything", "OUTPUT_DIR", str(tmp_path / "out"))
    assert result.returncode != 0
    assert "cfg.STA.POLICY = 'everything'" in result.log
    assert not (tmp_path / "out" / "last_checkpoint").exists()


def test_the_terminal_shows_progress_and_log_txt_the_dumps(tmp_path):
    generate_coco_shapes(str(tmp_path / "datasets/shapes"), num_train=4, num_val=2, image_size=(64, 64))
    out = tmp_path / "out"
    run = train_net(tmp_path, *TINY, "DATASETS.TEST", "()", "SOLVER.MAX_ITER", "20", "OUTPUT_DIR", str(out))
    assert run.returncode == 0, run.log[-3000:]
    lines = run.stdout.splitlines()
    first_progress = next(i for i, line in enumerate(lines) if " eta: " in line and "iter: 19" in line)
    assert first_progress + len(run.stderr.splitlines()) < 60, run.log
    assert "Allocation policy 'ista' over tasks ['det', 'mask']" in run.stdout
    assert "Training 20 optimizer steps on 4 images of shapes_train, 2 per batch, on cpu" in run.stdout
    assert f"Outputs in {out}: model_final.pth (weights)" in lines[-1]
    log = (out / "log.txt").read_text()
    for dump in ("Environment info:", "Running with full config:", "Model:"):
        assert dump in log and dump not in run.stdout

    verbose = train_net(tmp_path, "--verbose", *TINY, "DATASETS.TEST", "()", "SOLVER.MAX_ITER", "1",
                        "OUTPUT_DIR", str(tmp_path / "v"))
    assert verbose.returncode == 0, verbose.log[-3000:]
    assert "Running with full config:" in verbose.stdout and "Model:" in verbose.stdout
