"""A separate script adopts sta_d2 in a user's detectron2 project, the way README.md shows."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import IMAGE_SIZE
from sta_d2.data.synthetic import generate_coco_shapes

pytestmark = pytest.mark.slow  # trains in a subprocess

SCRIPT = Path(__file__).parent / "plugin_project" / "train_my_model.py"


def test_user_project_trains_with_sta(tmp_path):
    data = tmp_path / "data"
    generate_coco_shapes(str(data), num_train=4, num_val=1, image_size=IMAGE_SIZE, seed=1)
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run(
        [sys.executable, str(SCRIPT), str(data / "annotations/instances_train2017.json"), str(data / "train2017"), str(out)],
        cwd=tmp_path,  # not the repository: sta_d2 is imported as an installed package
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    last = [json.loads(line) for line in open(out / "metrics.json")][-1]
    assert last["iteration"] == 2
    assert {"task_loss/det", "task_loss/mask", "allocated/det", "allocated/mask"} <= set(last)
    assert (out / "model_final.pth").exists()
