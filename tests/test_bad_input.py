"""Bad configs and crashes fail early, name the key or path at fault, and keep checkpoints."""
import os

import pytest
import torch

from conftest import tiny_rcnn_cfg
from sta_d2 import STAConfigError, merge_config_file, validate_sta_config
from sta_d2.engine import AtomicCheckpointer


@pytest.mark.parametrize(
    "key, value, match",
    [
        ("POLICY", "round_robin", "STA.POLICY"),
        ("TASKS_PER_IMAGE", 0, "STA.TASKS_PER_IMAGE"),
        ("TASKS_PER_IMAGE", 3, "STA.TASKS_PER_IMAGE"),
        ("TASKS", ["det", "det"], "STA.TASKS"),
        ("GAP", 0, "STA.GAP"),
        ("SEED", -1, "STA.SEED"),
    ],
)
def test_invalid_sta_values_name_the_key(key, value, match):
    cfg = tiny_rcnn_cfg()
    cfg.STA.TASKS = ["det", "mask"]
    setattr(cfg.STA, key, value)
    with pytest.raises(STAConfigError, match=match):
        validate_sta_config(cfg)


@pytest.mark.parametrize(
    "tasks, match",
    [(["det", "depth"], "no task 'depth'"), (["det"], "leaves out the model's task 'mask'")],
)
def test_tasks_must_match_the_model(tasks, match):
    cfg = tiny_rcnn_cfg()
    cfg.STA.TASKS = tasks
    with pytest.raises(STAConfigError, match=match):
        validate_sta_config(cfg)


def test_sem_seg_task_needs_a_panoptic_model():
    cfg = tiny_rcnn_cfg()
    cfg.STA.TASKS = ["det", "mask", "sem_seg"]
    with pytest.raises(STAConfigError, match="no task 'sem_seg'"):
        validate_sta_config(cfg)


def test_config_file_errors_name_the_file(tmp_path):
    cfg = tiny_rcnn_cfg()
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        merge_config_file(cfg, str(tmp_path / "nope.yaml"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("STA: [unclosed\n")
    with pytest.raises(STAConfigError, match="bad.yaml"):
        merge_config_file(cfg, str(bad))
    wrong_type = tmp_path / "wrong.yaml"
    wrong_type.write_text("STA:\n  TASKS_PER_IMAGE: one\n")
    with pytest.raises(STAConfigError, match="wrong.yaml"):
        merge_config_file(cfg, str(wrong_type))


def test_crash_while_saving_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    model = torch.nn.Linear(2, 2)
    checkpointer = AtomicCheckpointer(model, str(tmp_path))
    checkpointer.save("model_final")
    good = torch.load(tmp_path / "model_final.pth", weights_only=True)

    def crash(obj, f, *args, **kwargs):
        f.write(b"partial")
        raise KeyboardInterrupt("killed while saving")

    with torch.no_grad():
        model.weight.add_(1.0)
    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        checkpointer.save("model_final")
    monkeypatch.undo()
    assert sorted(os.listdir(tmp_path)) == ["last_checkpoint", "model_final.pth"]
    assert (tmp_path / "last_checkpoint").read_text() == "model_final.pth"
    after = torch.load(tmp_path / "model_final.pth", weights_only=True)
    assert torch.equal(after["model"]["weight"], good["model"]["weight"])


def test_truncated_checkpoint_is_reported_with_its_path(tmp_path):
    model = torch.nn.Linear(2, 2)
    AtomicCheckpointer(model, str(tmp_path)).save("model_final")
    path = tmp_path / "model_final.pth"
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(RuntimeError, match="model_final.pth"):
        AtomicCheckpointer(model, str(tmp_path)).resume_or_load("", resume=True)
