"""Evaluation of dense multi-task predictions: segmentation, depth, disparity and surface normals.

Every metric is accumulated over all valid pixels of the whole split (sums, counts, one confusion
matrix, one histogram), never averaged per image or per batch.
"""
import json
import logging
import math
import os
from collections import OrderedDict

import numpy as np
import torch
from detectron2.data import MetadataCatalog
from detectron2.evaluation import DatasetEvaluator
from detectron2.utils import comm
from detectron2.utils.file_io import PathManager

from .multitask_gain import load_baselines, multi_task_gain, select_delta_m_metrics

# Metrics of each task, in the order they are reported; sem_seg also reports "IoU-<class>".
TASK_METRICS = OrderedDict(
    sem_seg=("mIoU", "pixAcc"),
    depth=("abs_err", "rel_err", "rmse", "log_rmse", "delta1", "delta2", "delta3"),
    disparity=("abs_err", "rel_err"),
    normal=("mean", "median", "within_11.25", "within_22.5", "within_30"),
)
NORMAL_THRESHOLDS = (11.25, 22.5, 30.0)
# Normal angles are binned at 1/ANGLE_BINS_PER_DEGREE degree to find the median of the split.
ANGLE_BINS_PER_DEGREE = 1000
_NUM_ANGLE_BINS = 180 * ANGLE_BINS_PER_DEGREE
RESULTS_FILE = "dense_evaluation.json"


def _div(a, b):
    return float(a) / float(b) if b else math.nan


class DenseMultiTaskEvaluator(DatasetEvaluator):
    """Split-level metrics of dense predictions, optionally with the multi-task gain delta_m.

    ``process`` reads, per image, the ground truth ``input[task]`` and the prediction
    ``output[task]`` at the same resolution, for each task of ``tasks``:

    - "sem_seg": int (H, W) labels (``ignore_label`` ignored) and (C, H, W) logits. mIoU comes from
      one confusion matrix over the split and averages the IoU of every class that occurs in the
      ground truth or the prediction of the split; a class absent from both is left out (its
      "IoU-<class>" is NaN). ``pixAcc`` = correct / non-ignored pixels. Both in percent.
    - "depth" (metres) and "disparity" (pixels): (1, H, W); a pixel is valid where the ground truth
      is finite and > 0. ``abs_err`` = mean |p - g|, ``rel_err`` = mean |p - g| / g; depth adds
      ``rmse``, ``log_rmse`` and ``delta<k>`` = % of pixels with max(p/g, g/p) < 1.25^k. A
      prediction p <= 0 has no log or ratio: it is left out of ``log_rmse`` (which averages over
      valid pixels with p > 0; their number is logged) and fails every ``delta<k>``.
    - "normal": (3, H, W) vectors; valid where the ground truth is finite and non-zero. The angle
      in degrees between the directions of prediction and ground truth (i.e. both normalised to
      unit length) gives ``mean``, ``median`` and ``within_<t>`` = % of pixels with angle < t. An
      all-zero prediction has no direction and counts as 90 degrees; a non-finite one makes
      ``mean`` and ``median`` NaN. ``mean`` and ``within_<t>`` are exact (float64). ``median`` is
      read from a histogram of the split's angles with bins of 0.001 degree: it is the median of
      the bin centres, within 0.0005 degree of the exact median.

    An image whose input lacks a task's key does not count for that task; a task no image has
    reports NaN. With ``baselines`` (``{task: {metric: value}}`` or a JSON file of it), the results
    get ``"delta_m": {"delta_m": value}`` over ``delta_m_metrics`` ("task/metric" names; empty:
    every baseline metric the evaluator reports), see :func:`multi_task_gain`. Metrics and
    baselines are checked when the evaluator is built, and reported in the log and the JSON file
    it saves in ``output_dir``.
    """

    def __init__(
        self,
        dataset_name,
        tasks,
        *,
        num_classes=None,
        class_names=None,
        ignore_label=255,
        distributed=True,
        output_dir=None,
        baselines=None,
        delta_m_metrics=None,
    ):
        """
        Args:
            dataset_name (str): the evaluated dataset, for the log and the saved results.
            tasks (list[str]): tasks to evaluate, among "sem_seg", "depth", "disparity", "normal".
            num_classes (int): segmentation classes; defaults to ``len(class_names)``.
            class_names (list[str]): names of the classes, for per-class "IoU-<name>".
            ignore_label (int): segmentation label that is not evaluated.
            distributed (bool): gather the accumulated sums of every process to the main one.
            output_dir (str): where to save the results as JSON (None: not saved).
            baselines (dict or str): single-task baselines for delta_m (None: no delta_m).
            delta_m_metrics (list[str]): "task/metric" names entering delta_m.
        """
        self._logger = logging.getLogger(__name__)
        self._dataset_name = dataset_name
        self._tasks = list(tasks)
        unknown = [t for t in self._tasks if t not in TASK_METRICS]
        if not self._tasks or unknown or len(set(self._tasks)) != len(self._tasks):
            raise ValueError(
                f"dense evaluation of {dataset_name!r}: tasks {self._tasks} must be distinct "
                f"names among {list(TASK_METRICS)}"
            )
        if class_names is not None:
            class_names = list(class_names)
            if num_classes is None:
                num_classes = len(class_names)
            elif len(class_names) != num_classes:
                raise ValueError(
                    f"dense evaluation of {dataset_name!r}: {len(class_names)} class names for "
                    f"num_classes={num_classes}"
                )
        if "sem_seg" in self._tasks and not (isinstance(num_classes, int) and num_classes > 0):
            raise ValueError(
                f"dense evaluation of {dataset_name!r}: sem_seg needs num_classes or class_names"
            )
        self._num_classes = num_classes
        self._class_names = class_names
        self._ignore_label = ignore_label
        self._distributed = distributed
        self._output_dir = output_dir

        self._baselines = self._delta_m_metrics = None
        if baselines is not None:
            self._baseline_source = (
                os.fspath(baselines) if isinstance(baselines, (str, os.PathLike)) else "dict"
            )
            self._baselines = load_baselines(baselines)
            reported = {
                task: dict.fromkeys(self._metric_names(task)) for task in self._tasks
            }
            self._delta_m_metrics = select_delta_m_metrics(
                reported, self._baselines, delta_m_metrics
            )
        elif delta_m_metrics:
            raise ValueError(
                f"dense evaluation of {dataset_name!r}: delta_m metrics {list(delta_m_metrics)} "
                "given without baselines"
            )
        self.reset()

    def _metric_names(self, task):
        names = list(TASK_METRICS[task])
        if task == "sem_seg" and self._class_names:
            names += [f"IoU-{name}" for name in self._class_names]
        return names

    def reset(self):
        zeros = {
            "sem_seg": lambda: {"confusion": np.zeros((self._num_classes,) * 2, dtype=np.int64)},
            "depth": lambda: dict.fromkeys(
                ("count", "abs", "rel", "sq", "log_count", "log_sq", "delta1", "delta2", "delta3"),
                0,
            ),
            "disparity": lambda: dict.fromkeys(("count", "abs", "rel"), 0),
            "normal": lambda: {
                **dict.fromkeys(("count", "sum", "non_finite"), 0),
                **{f"within_{t:g}": 0 for t in NORMAL_THRESHOLDS},
                "histogram": np.zeros(_NUM_ANGLE_BINS, dtype=np.int64),
            },
        }
        self._sums = {task: {"images": 0, **zeros[task]()} for task in self._tasks}

    def process(self, inputs, outputs):
        """Add each image's pixels to the sums of every task its input has ground truth for."""
        measure = {
            "sem_seg": self._sem_seg_sums,
            "depth": self._depth_sums,
            "disparity": self._disparity_sums,
            "normal": self._normal_sums,
        }
        for input, output in zip(inputs, outputs):
            for task in self._tasks:
                if task not in input:
                    continue
                where = f"{task} of image {input.get('image_id', '?')!r}"
                if task not in output:
                    raise ValueError(f"{where}: ground truth given but no prediction")
                pred, gt = output[task].detach(), torch.as_tensor(input[task]).cpu()
                if task == "sem_seg":
                    if pred.dim() != 3 or pred.shape[0] != self._num_classes:
                        raise ValueError(
                            f"{where}: prediction of shape {tuple(pred.shape)} is not "
                            f"({self._num_classes}, H, W) logits"
                        )
                    pred = pred.argmax(dim=0)
                pred = pred.cpu()
                if pred.shape != gt.shape:
                    raise ValueError(
                        f"{where}: prediction of shape {tuple(pred.shape)} does not match the "
                        f"ground truth of shape {tuple(gt.shape)}"
                    )
                sums = self._sums[task]
                sums["images"] += 1
                for key, value in measure[task](pred, gt, where).items():
                    sums[key] = sums[key] + value

    def _sem_seg_sums(self, pred, gt, where):
        n = self._num_classes
        valid = gt != self._ignore_label
        gt, pred = gt[valid].long(), pred[valid]
        bad = (gt < 0) | (gt >= n)
        if bad.any():
            raise ValueError(
                f"{where}: label {int(gt[bad][0])} is neither in [0, {n}) nor the ignore label "
                f"{self._ignore_label}"
            )
        confusion = torch.bincount(gt * n + pred, minlength=n * n).reshape(n, n)
        return {"confusion": confusion.numpy()}

    @staticmethod
    def _valid_pixels(pred, gt):
        gt, pred = gt.double(), pred.double()
        valid = torch.isfinite(gt) & (gt > 0)
        return pred[valid], gt[valid]

    def _disparity_sums(self, pred, gt, where):
        pred, gt = self._valid_pixels(pred, gt)
        err = (pred - gt).abs()
        return {"count": gt.numel(), "abs": err.sum().item(), "rel": (err / gt).sum().item()}

    def _depth_sums(self, pred, gt, where):
        pred, gt = self._valid_pixels(pred, gt)
        err = (pred - gt).abs()
        positive = pred > 0
        ratio = torch.where(positive, torch.maximum(pred / gt, gt / pred), math.inf)
        log_err = pred[positive].log() - gt[positive].log()
        sums = {
            "count": gt.numel(),
            "abs": err.sum().item(),
            "rel": (err / gt).sum().item(),
            "sq": err.square().sum().item(),
            "log_count": int(positive.sum()),
            "log_sq": log_err.square().sum().item(),
        }
        for k in (1, 2, 3):
            sums[f"delta{k}"] = int((ratio < 1.25**k).sum())
        return sums

    def _normal_sums(self, pred, gt, where):
        if gt.dim() != 3 or gt.shape[0] != 3:
            raise ValueError(f"{where}: normals of shape {tuple(gt.shape)} are not (3, H, W)")
        gt, pred = gt.double(), pred.double()
        valid = torch.isfinite(gt).all(dim=0) & (gt != 0).any(dim=0)
        gt, pred = gt[:, valid], pred[:, valid]
        # atan2(|p x g|, p . g) is the angle between the directions, accurate near 0 and 180
        cross = torch.linalg.cross(pred, gt, dim=0).norm(dim=0)
        angle = torch.rad2deg(torch.atan2(cross, (pred * gt).sum(dim=0)))
        angle[(pred == 0).all(dim=0)] = 90.0
        finite = torch.isfinite(pred).all(dim=0)
        angle[~finite] = math.nan
        bins = (angle[finite] * ANGLE_BINS_PER_DEGREE).long().clamp_(max=_NUM_ANGLE_BINS - 1)
        sums = {
            "count": angle.numel(),
            "sum": angle.sum().item(),
            "non_finite": int((~finite).sum()),
            "histogram": torch.bincount(bins, minlength=_NUM_ANGLE_BINS).numpy(),
        }
        for t in NORMAL_THRESHOLDS:
            sums[f"within_{t:g}"] = int((angle < t).sum())
        return sums

    def evaluate(self):
        """``{task: {metric: value}}`` (plus ``"delta_m"``) on the main process, {} elsewhere."""
        sums = self._sums
        if self._distributed:
            comm.synchronize()
            gathered = comm.gather(self._sums, dst=0)
            if not comm.is_main_process():
                return {}
            sums = {
                task: {key: sum(part[task][key] for part in gathered) for key in sums[task]}
                for task in self._tasks
            }
        finish = {
            "sem_seg": self._sem_seg_metrics,
            "depth": self._depth_metrics,
            "disparity": self._disparity_metrics,
            "normal": self._normal_metrics,
        }
        results = OrderedDict()
        for task in self._tasks:
            if sums[task]["images"] == 0:
                self._logger.warning(
                    f"dense evaluation of {self._dataset_name}: no image has {task} ground truth; "
                    f"its metrics are NaN"
                )
            results[task] = finish[task](sums[task])
        counts = ", ".join(f"{task} on {sums[task]['images']} images" for task in self._tasks)
        self._logger.info(f"Dense evaluation of {self._dataset_name}: {counts}")

        report = {"dataset": self._dataset_name, "images": {t: sums[t]["images"] for t in sums}}
        if self._baselines is not None:
            value = multi_task_gain(results, self._baselines, self._delta_m_metrics)
            results["delta_m"] = {"delta_m": value}
            used = OrderedDict()
            for name in self._delta_m_metrics:
                task, _, metric = name.partition("/")
                used[name] = self._baselines[task][metric]
            self._logger.info(
                f"delta_m = {value:.4f} % over {len(used)} metrics against the baselines "
                f"{self._baseline_source}: "
                + ", ".join(f"{name} (baseline {base:g})" for name, base in used.items())
            )
            report["delta_m"] = {"metrics": used, "baselines": self._baseline_source}
        report["results"] = results
        self._logger.info(dict(results))
        if self._output_dir:
            PathManager.mkdirs(self._output_dir)
            with PathManager.open(os.path.join(self._output_dir, RESULTS_FILE), "w") as f:
                json.dump(report, f, indent=2)
        return results

    def _sem_seg_metrics(self, sums):
        confusion = sums["confusion"].astype(np.float64)
        tp = np.diag(confusion)
        union = confusion.sum(axis=0) + confusion.sum(axis=1) - tp
        present = union > 0
        iou = np.full(self._num_classes, math.nan)
        iou[present] = tp[present] / union[present]
        res = OrderedDict()
        res["mIoU"] = 100 * float(iou[present].mean()) if present.any() else math.nan
        res["pixAcc"] = 100 * _div(tp.sum(), confusion.sum())
        for name, value in zip(self._class_names or (), iou):
            res[f"IoU-{name}"] = 100 * float(value)
        return res

    @staticmethod
    def _disparity_metrics(sums):
        return OrderedDict(
            abs_err=_div(sums["abs"], sums["count"]), rel_err=_div(sums["rel"], sums["count"])
        )

    def _depth_metrics(self, sums):
        count = sums["count"]
        non_positive = count - sums["log_count"]
        if non_positive:
            self._logger.warning(
                f"depth: {non_positive} of {count} valid pixels have predictions <= 0; they are "
                "left out of log_rmse and fail delta1-3"
            )
        res = self._disparity_metrics(sums)
        res["rmse"] = math.sqrt(_div(sums["sq"], count))
        res["log_rmse"] = math.sqrt(_div(sums["log_sq"], sums["log_count"]))
        for k in (1, 2, 3):
            res[f"delta{k}"] = 100 * _div(sums[f"delta{k}"], count)
        return res

    @staticmethod
    def _normal_metrics(sums):
        count, histogram = sums["count"], sums["histogram"]
        res = OrderedDict(mean=_div(sums["sum"], count), median=math.nan)
        n = int(histogram.sum())
        if n and not sums["non_finite"]:
            # bins holding the (n-1)//2-th and n//2-th smallest angles (0-based)
            ends = np.cumsum(histogram)
            low, high = np.searchsorted(ends, [(n - 1) // 2 + 1, n // 2 + 1])
            res["median"] = float(low + high + 1) / 2 / ANGLE_BINS_PER_DEGREE
        for t in NORMAL_THRESHOLDS:
            res[f"within_{t:g}"] = 100 * _div(sums[f"within_{t:g}"], count)
        return res


def build_dense_evaluator(cfg, dataset_name, output_folder=None):
    """A :class:`DenseMultiTaskEvaluator` for ``dataset_name`` from the config and the metadata.

    Tasks: ``cfg.MODEL.DENSE.TASKS`` (the model's), or, when the config has none, the metadata's
    ``dense_tasks``. Classes and ignore label: the metadata's ``stuff_classes`` and
    ``ignore_label`` (default 255). delta_m: ``cfg.TEST.DENSE.BASELINES`` (a JSON file; empty: no
    delta_m) and ``cfg.TEST.DENSE.DELTA_M_METRICS``. ``output_folder`` defaults to
    ``cfg.OUTPUT_DIR/inference``.
    """
    meta = MetadataCatalog.get(dataset_name)
    dense = cfg.MODEL.get("DENSE")
    tasks = list(dense.get("TASKS", [])) if dense is not None else []
    if not tasks:
        tasks = list(meta.get("dense_tasks", []))
    if not tasks:
        raise ValueError(
            f"dense evaluation of {dataset_name!r}: no tasks; set cfg.MODEL.DENSE.TASKS or the "
            "dataset metadata 'dense_tasks'"
        )
    class_names = meta.get("stuff_classes")
    if "sem_seg" in tasks and not class_names:
        raise ValueError(
            f"dense evaluation of {dataset_name!r}: sem_seg needs the metadata 'stuff_classes'"
        )
    if output_folder is None:
        output_folder = os.path.join(cfg.OUTPUT_DIR, "inference")
    return DenseMultiTaskEvaluator(
        dataset_name,
        tasks,
        class_names=class_names if "sem_seg" in tasks else None,
        ignore_label=meta.get("ignore_label", 255),
        output_dir=output_folder,
        baselines=cfg.TEST.DENSE.BASELINES or None,
        delta_m_metrics=list(cfg.TEST.DENSE.DELTA_M_METRICS),
    )
