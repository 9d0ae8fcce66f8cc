"""Mistakes are found before a run writes anything, and their errors carry the fix
(sta_d2.check_run, sta_d2.load_config, the dense loaders, tools/train_net.py)."""
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sta_d2 import STAConfigError, check_run, load_config
from sta_d2.data.datasets import load_nyuv2_13, register_all_nyuv2, register_all_shapes
from sta_d2.data.synthetic import generate_coco_shapes
from sta_d2.engine import check_device

REPO = Path(__file__).parents[1]
DEMO = str(REPO / "configs/Demo/shapes_mask_rcnn_ista.yaml")
DENSE_DEMO = str(REPO / "configs/Demo/nyuv2_segnet_ista.yaml")
NYUV2 = ["nyuv2_13_train", "nyuv2_13_val", "nyuv2_13_train_extra", "nyuv2_40_train", "nyuv2_40_val",
         "nyuv2_40_train_extra"]


@pytest.fixture
def datasets_at(reregister, monkeypatch):
    """``datasets_at(root)``: sta_d2's shapes and NYUv2 datasets registered under ``root``, as with
    ``DETECTRON2_DATASETS=root``."""
    def at(root):
        monkeypatch.setenv("DETECTRON2_DATASETS", str(root))
        reregister(str(root), ["shapes_train", "shapes_val"], register_all_shapes)
        reregister(str(root), NYUV2, register_all_nyuv2)
    return at


def problems(cfg, **kwargs):
    with pytest.raises(STAConfigError) as error:
        check_run(cfg, **kwargs)
    return str(error.value)


def test_a_misspelt_key_gets_the_closest_keys():
    with pytest.raises(STAConfigError, match=r"STA\.POLICI is not a config key; did you mean STA\.POLICY\?"):
        load_config(DEMO, ["STA.POLICI", "ista"])


def test_an_unknown_dataset_gets_close_names_not_the_whole_list(tmp_path, datasets_at):
    datasets_at(tmp_path)
    generate_coco_shapes(str(tmp_path / "shapes"), num_train=1, num_val=1, image_size=(32, 32))
    message = problems(load_config(DEMO, ["DATASETS.TRAIN", "('shapes_trian',)"]))
    assert "cfg.DATASETS.TRAIN: 'shapes_trian' is not a registered dataset; did you mean 'shapes_train'" in message
    assert "coco_2014_train" not in message and len(message) < 400


def test_a_missing_dataset_root_names_the_variable_and_the_generating_command(tmp_path, datasets_at):
    datasets_at(tmp_path / "nowhere")
    message = problems(load_config(DENSE_DEMO))
    root = tmp_path / "nowhere"
    assert f"dataset 'nyuv2_13_train' reads {root}/nyuv2/train, which does not exist" in message
    assert f"$DETECTRON2_DATASETS (now {root})" in message
    assert f"python -m sta_d2.data.synthetic nyuv2_13 --root {root}/nyuv2" in message
    assert message.startswith("2 problems:")  # nyuv2_13_train and nyuv2_13_val, one line each


def test_the_dense_loader_names_the_variable_and_the_command(tmp_path, monkeypatch):
    monkeypatch.delenv("DETECTRON2_DATASETS", raising=False)
    with pytest.raises(FileNotFoundError) as error:
        load_nyuv2_13(str(tmp_path / "nyuv2" / "train"))
    assert "$DETECTRON2_DATASETS (unset, so ./datasets of the current directory)" in str(error.value)
    assert f"python -m sta_d2.data.synthetic nyuv2_13 --root {tmp_path}/nyuv2" in str(error.value)


def test_a_missing_weights_file_is_named_unless_resume_finds_a_checkpoint(tmp_path, datasets_at):
    datasets_at(tmp_path)
    generate_coco_shapes(str(tmp_path / "shapes"), num_train=1, num_val=1, image_size=(32, 32))
    cfg = load_config(DEMO, ["MODEL.WEIGHTS", str(tmp_path / "model.pth"), "OUTPUT_DIR", str(tmp_path / "out")])
    assert f"cfg.MODEL.WEIGHTS = '{tmp_path}/model.pth': no such file" in problems(cfg)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "last_checkpoint").write_text("model_0000009.pth")
    check_run(cfg, resume=True)
    check_run(load_config(DEMO, ["MODEL.WEIGHTS", "detectron2://ImageNetPretrained/MSRA/R-50.pkl"]))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks a machine without CUDA")
def test_cuda_without_cuda_says_to_set_the_device_to_cpu():
    with pytest.raises(STAConfigError) as error:
        check_device("cuda", 8)
    message = str(error.value)
    assert "cfg.MODEL.DEVICE = 'cuda' but this machine has no CUDA (--num-gpus 8 asks for 8 GPUs)" in message
    assert "add `MODEL.DEVICE cpu`" in message and f"at most --num-gpus {os.cpu_count()}" in message
    check_device("cpu", 2)


def test_every_problem_is_reported_at_once(tmp_path, datasets_at):
    datasets_at(tmp_path)
    generate_coco_shapes(str(tmp_path / "shapes"), num_train=1, num_val=1, image_size=(32, 32))
    cfg = load_config(DEMO, ["DATASETS.TEST", "('shapes_vall',)", "MODEL.WEIGHTS", "missing.pth",
                             "MODEL.DEVICE", "cpu:x"])
    message = problems(cfg)
    assert message.startswith("3 problems:\n- cfg.MODEL.DEVICE = 'cpu:x' is not a torch device")
    assert "did you mean 'shapes_val'" in message and "cfg.MODEL.WEIGHTS = 'missing.pth'" in message


def checksums(folder):
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.slow  # a training run and six failed starts, each in its own process
def test_failed_starts_leave_a_trained_folder_as_it_was(tmp_path):
    datasets = tmp_path / "datasets"
    generate_coco_shapes(str(datasets / "shapes"), num_train=4, num_val=2, image_size=(64, 64))
    out = tmp_path / "out"
    env = {**os.environ, "DETECTRON2_DATASETS": str(datasets)}

    def train_net(*opts, env=env, cwd=REPO):
        return subprocess.run([sys.executable, str(REPO / "tools/train_net.py"), "--config-file", DEMO, *opts],
                              env=env, cwd=cwd, capture_output=True, text=True, timeout=600)

    tiny = ["SOLVER.IMS_PER_BATCH", "2", "SOLVER.MAX_ITER", "2", "INPUT.MIN_SIZE_TRAIN", "(64,)",
            "INPUT.MAX_SIZE_TRAIN", "64", "DATASETS.TEST", "()", "OUTPUT_DIR", str(out)]
    trained = train_net(*tiny)
    assert trained.returncode == 0, trained.stdout[-2000:] + trained.stderr[-2000:]
    before = checksums(out)
    assert {"config.yaml", "log.txt", "metrics.json", "model_final.pth", "last_checkpoint"} <= set(before)
    assert any(name.startswith("events.out.tfevents") for name in before)

    unset = {k: v for k, v in env.items() if k != "DETECTRON2_DATASETS"}
    (tmp_path / "elsewhere").mkdir()  # a working directory without ./datasets
    mistakes = {  # what: (command-line arguments, run in, what the error must say)
        "STA.TASKS_PER_IMAGE above the number of tasks": (
            ["STA.TASKS_PER_IMAGE", "3"], {}, "cfg.STA.TASKS_PER_IMAGE = 3: exceeds the number of tasks"),
        "a misspelt dataset name": (
            ["DATASETS.TRAIN", "('shapes_trian',)"], {}, "did you mean 'shapes_train'?"),
        "an unset dataset root": (
            [], {"env": unset, "cwd": tmp_path / "elsewhere"},
            "python -m sta_d2.data.synthetic coco --root datasets/shapes"),
        "a missing MODEL.WEIGHTS file": (
            ["MODEL.WEIGHTS", str(tmp_path / "model_final.pth")], {}, "model_final.pth': no such file"),
        "a misspelt key": (["STA.POLICI", "sta"], {}, "did you mean STA.POLICY?"),
    }
    if not torch.cuda.is_available():
        mistakes["--num-gpus 2 with MODEL.DEVICE cuda on a CPU machine"] = (
            ["--num-gpus", "2", "MODEL.DEVICE", "cuda"], {}, "add `MODEL.DEVICE cpu`")
    for mistake, (arguments, where, fix) in mistakes.items():
        result = train_net(*arguments, *tiny, **where)
        assert result.returncode != 0, mistake
        assert fix in result.stderr, f"{mistake}: {result.stderr[-2000:]}"
        assert "Traceback" not in result.stderr and not result.stdout, mistake
        assert checksums(out) == before, f"{mistake} changed {out}"
