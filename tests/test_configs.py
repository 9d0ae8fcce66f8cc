"""Every shipped config loads (its model-zoo base resolved from the installed detectron2),
validates and builds; the Cityscapes Panoptic-FPN setting trains and evaluates end to end."""
import uuid
from pathlib import Path

import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.modeling import build_model

from sta_d2 import STATrainer, load_config
from sta_d2.data.datasets import register_cityscapes_inst_sem
from sta_d2.data.synthetic import generate_cityscapes

CONFIGS = sorted(p for p in (Path(__file__).parents[1] / "configs").rglob("*.yaml") if not p.name.startswith("Base-"))
RCNN_TASKS = {"mask_rcnn": ["det", "mask"], "panoptic_fpn": ["det", "mask", "sem_seg"]}


def load(path, *opts):
    return load_config(str(path), ["MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", "", *opts])


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_config_builds_its_model(path):
    cfg = load(path)
    model = build_model(cfg)
    single_task = path.stem.endswith("_single")
    assert cfg.STA.POLICY == ("full" if single_task else path.stem.rsplit("_", 1)[-1])
    rcnn = [k for k in RCNN_TASKS if k in path.stem]
    expected = RCNN_TASKS[rcnn[0]] if rcnn else list(cfg.MODEL.DENSE.TASKS)
    assert model.tasks == expected
    if single_task:
        assert len(model.tasks) == 1 and model.tasks[0] in path.stem


def test_cityscapes_panoptic_sta_trains_and_evaluates(tmp_path, monkeypatch):
    root = tmp_path / "cityscapes"
    generate_cityscapes(str(root), num_train=2, num_val=2, seed=2)
    names = [f"sta_cfg_test_{split}_{uuid.uuid4().hex[:6]}" for split in ("train", "val")]
    for name, split in zip(names, ("train", "val")):
        register_cityscapes_inst_sem(name, str(root / "leftImg8bit" / split), str(root / "gtFine" / split))
    monkeypatch.chdir(tmp_path)  # cityscapesscripts writes matches.json into the working directory
    try:
        cfg = load(
            Path(__file__).parents[1] / "configs/Cityscapes/panoptic_fpn_R_50_sta.yaml",
            "MODEL.RESNETS.DEPTH", "18", "MODEL.RESNETS.RES2_OUT_CHANNELS", "64",
            "MODEL.FPN.OUT_CHANNELS", "32", "MODEL.SEM_SEG_HEAD.CONVS_DIM", "32",
            "INPUT.MIN_SIZE_TRAIN", "(128,)", "INPUT.MAX_SIZE_TRAIN", "256",
            "INPUT.MIN_SIZE_TEST", "128", "INPUT.MAX_SIZE_TEST", "256",
            "DATASETS.TRAIN", f"('{names[0]}',)", "DATASETS.TEST", f"('{names[1]}',)",
            "DATALOADER.NUM_WORKERS", "0", "SOLVER.IMS_PER_BATCH", "2", "SOLVER.MAX_ITER", "2",
            "SOLVER.STEPS", "()", "SOLVER.WARMUP_ITERS", "0", "SOLVER.BASE_LR", "0.001",
            "OUTPUT_DIR", str(tmp_path / "out"),
        )
        trainer = STATrainer(cfg)
        trainer.resume_or_load(resume=False)
        trainer.train()
        results = trainer._last_eval_results  # what the final EvalHook computed
    finally:
        for name in names:
            DatasetCatalog.remove(name)
            MetadataCatalog.remove(name)
    assert "AP" in results["segm"] and "mIoU" in results["sem_seg"]
