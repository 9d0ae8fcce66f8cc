"""A dense task sta_d2 does not have, binary saliency, defined and registered here as a user's own
project would: its dataset loads and maps, the dense model trains on it, the dense evaluator
scores it and the report shows it, with no change to sta_d2."""
import json
import uuid

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from detectron2.data import DatasetCatalog, MetadataCatalog

from conftest import dense_cfg, short_run
from sta_d2 import STATrainer, validate_sta_config
from sta_d2.data import DenseDatasetMapper
from sta_d2.data.datasets import NYUV2_13_CLASSES
from sta_d2.data.datasets.dense import load_numbered_npy, register_dense_dataset
from sta_d2.data.partial_labels import simulate_partial_labels
from sta_d2.data.synthetic import generate_nyuv2_13
from sta_d2.dense_tasks import DENSE_TASK_REGISTRY, DenseTask
from sta_d2.dense_tasks.base import divide, fail_file
from sta_d2.evaluation import lower_is_better
from sta_d2.reporting.run_report import load_run, write_report

UNLABELLED = -1.0
SALIENT_CLASSES = (0, 3, 8, 9)  # bed, chair, sofa, table of NYUv2-13: what stands in the room
BETA2 = 0.3  # the weight of precision in saliency's F-measure


@DENSE_TASK_REGISTRY.register()
class SaliencyTask(DenseTask):
    """Binary saliency: float (1, H, W) targets, 1 salient, 0 not, -1 unlabelled; one logit per
    pixel, binary cross-entropy; ``mae`` of the probabilities and the F-measure ``f_beta`` (in %,
    beta^2 = 0.3, probabilities thresholded at 0.5) over the labelled pixels of the split."""

    name = "saliency"
    METRICS = {"mae": True, "f_beta": False}
    REPORT_COLUMNS = ("mae", "f_beta")
    invalid_value = UNLABELLED

    def decode(self, values, path):
        if values.ndim != 2 or not np.isin(values, (UNLABELLED, 0.0, 1.0)).all():
            fail_file(path, "saliency map is not (H, W) of 0, 1 and -1")
        return values.astype(np.float32)

    def valid(self, target):
        return (target >= 0).all(dim=1)

    def pixel_losses(self, prediction, target):
        losses = F.binary_cross_entropy_with_logits(prediction, target.clamp_min(0), reduction="none")
        return losses.squeeze(1)

    def prediction(self, output):
        return output.sigmoid()

    def new_sums(self):
        return dict.fromkeys(("count", "abs", "true_positive", "predicted", "salient"), 0)

    def image_sums(self, prediction, target, where):
        labelled = target >= 0
        p, g = prediction[labelled].double(), target[labelled].double()
        hit = p >= 0.5
        return {"count": g.numel(), "abs": (p - g).abs().sum().item(),
                "true_positive": int((hit & (g == 1)).sum()), "predicted": int(hit.sum()),
                "salient": int((g == 1).sum())}

    def metrics(self, sums):
        f_beta = divide((1 + BETA2) * sums["true_positive"], BETA2 * sums["salient"] + sums["predicted"])
        return {"mae": divide(sums["abs"], sums["count"]), "f_beta": 100 * f_beta}


TASKS = ("sem_seg", "depth", "saliency")
SPLIT_DIRS = {"sem_seg": "label", "depth": "depth", "saliency": "saliency"}


@pytest.fixture(scope="module")
def saliency_nyuv2(tmp_path_factory):
    """NYUv2-13 rooms (4 train, 2 val images) with a saliency map per image, registered as dense
    datasets; yields {split: dataset name}."""
    root = tmp_path_factory.mktemp("saliency_nyuv2")
    generate_nyuv2_13(str(root), num_train=4, num_val=2, image_size=(32, 48), seed=1)
    names = {}
    for split in ("train", "val"):
        (root / split / "saliency").mkdir()
        for label_file in (root / split / "label").iterdir():
            label = np.load(label_file)
            saliency = np.where(label < 0, UNLABELLED, np.isin(label, SALIENT_CLASSES))
            np.save(root / split / "saliency" / label_file.name, saliency.astype(np.float32))
        names[split] = f"sta_test_saliency_{split}_{uuid.uuid4().hex[:8]}"
        register_dense_dataset(
            names[split], lambda d=str(root / split): load_numbered_npy(d, SPLIT_DIRS, "nyuv2_npy"),
            tasks=TASKS, classes=NYUV2_13_CLASSES, depth_unit="metres",
        )
    yield names
    for name in names.values():
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)


def test_the_new_task_is_read_mapped_and_has_its_labels_and_directions(saliency_nyuv2):
    record = DatasetCatalog.get(saliency_nyuv2["train"])[0]
    out = DenseDatasetMapper(is_train=False)(record)
    stored = np.load(record["saliency_file_name"])
    assert out["saliency"].shape == (1, *stored.shape) and out["saliency"].dtype == torch.float32
    assert torch.equal(out["saliency"][0], torch.from_numpy(stored))
    dropped = simulate_partial_labels([record], TASKS, "one_per_image", [], seed=0)[0]
    assert sum(f"{task}_file_name" in dropped for task in TASKS) == 1
    assert lower_is_better("mae", "saliency") and not lower_is_better("f_beta", "saliency")


@pytest.mark.filterwarnings("ignore:Data has no positive values")  # the loss plot of 3 steps
def test_the_new_task_trains_evaluates_and_is_reported(saliency_nyuv2, tmp_path):
    baselines = tmp_path / "single_task.json"
    baselines.write_text(json.dumps({"saliency": {"mae": 0.5, "f_beta": 20.0}}))
    cfg = short_run(dense_cfg("segnet", tasks=TASKS), tmp_path / "ista", "ista", max_iter=3)
    cfg.MODEL.DENSE.NUM_CLASSES = 13
    cfg.MODEL.PIXEL_MEAN, cfg.MODEL.PIXEL_STD = [0.0, 0.0, 0.0], [255.0, 255.0, 255.0]
    cfg.DATASETS.TRAIN, cfg.DATASETS.TEST = (saliency_nyuv2["train"],), (saliency_nyuv2["val"],)
    cfg.TEST.DENSE.BASELINES = str(baselines)
    cfg.TEST.DENSE.DELTA_M_METRICS = ["saliency/mae", "saliency/f_beta"]
    validate_sta_config(cfg)
    torch.manual_seed(0)
    trainer = STATrainer(cfg)
    assert trainer.model.heads["saliency"].predictor.out_channels == 1
    trainer.resume_or_load(resume=False)
    trainer.train()

    saved = json.loads((tmp_path / "ista" / "inference" / "dense_evaluation.json").read_text())
    assert saved["images"] == {"sem_seg": 2, "depth": 2, "saliency": 2}
    results = saved["results"]["saliency"]
    assert list(results) == ["mae", "f_beta"]
    assert 0 < results["mae"] < 1 and 0 <= results["f_beta"] <= 100
    # mae improves downwards, f_beta upwards
    gain = (-(results["mae"] - 0.5) / 0.5 + (results["f_beta"] - 20.0) / 20.0) / 2 * 100
    assert saved["delta_m"]["metrics"] == {"saliency/mae": 0.5, "saliency/f_beta": 20.0}
    assert saved["results"]["delta_m"]["delta_m"] == pytest.approx(gain)

    run = load_run(str(tmp_path / "ista"), "ISTA")
    assert run.results["saliency"] == pytest.approx(results)
    paths = write_report([run.path], str(tmp_path / "report"), baselines=[str(baselines)], names=["ISTA"])
    with open(paths["markdown"]) as f:
        header, _, baseline_row, ista_row = f.read().split("\n\n")[0].splitlines()
    columns = [cell.strip() for cell in header.strip("|").split("|")]
    assert columns[-3:] == ["saliency/mae ↓", "saliency/f_beta ↑", "Δm (relative, %) ↑"]
    assert columns[1:3] == ["sem_seg/mIoU ↑", "sem_seg/pixAcc ↑"]
    cells = [cell.strip() for cell in ista_row.strip("|").split("|")]
    assert cells[0] == "ISTA" and cells[-1] == f"{gain:+.2f}"
