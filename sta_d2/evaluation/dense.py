"""Evaluation of dense multi-task predictions, each task scored as its descriptor says
(``sta_d2.dense_tasks``).

Every metric is accumulated over all valid pixels of the whole split (sums, counts, one confusion
matrix, one histogram), never averaged per image or per batch.
"""
import json
import logging
import os
from collections import OrderedDict

import torch
from detectron2.data import MetadataCatalog
from detectron2.evaluation import DatasetEvaluator
from detectron2.utils import comm
from detectron2.utils.file_io import PathManager

from ..dense_tasks import build_dense_task, dense_task_names, get_dense_task
from ..specs import ConfigKeys, Key, fail, list_of, one_of, text
from .multitask_gain import (
    DELTA_M_CONVENTIONS,
    DELTA_M_UNITS,
    load_baselines,
    multi_task_gain,
    select_delta_m_metrics,
)

RESULTS_FILE = "dense_evaluation.json"


def _delta_m_metric_names():
    return [f"{name}/{metric}" for name in dense_task_names() for metric in get_dense_task(name).METRICS]


CONFIG_KEYS = ConfigKeys({
    # Single-task results for the multi-task gain delta_m: a JSON file {task: {metric: value}}
    # (empty: no delta_m), opened (and checked) with the evaluator.
    "TEST.DENSE.BASELINES": Key("", text()),
    # The "task/metric" names delta_m averages over (empty: every metric of the baseline file).
    "TEST.DENSE.DELTA_M_METRICS": Key([], list_of(one_of(_delta_m_metric_names), distinct=True)),
    # How delta_m averages the metrics' changes: "paper" (raw differences, the STA/ISTA paper),
    # "relative" (% per task, then over tasks) or "flat" (% over all metrics); see multitask_gain.
    "TEST.DENSE.DELTA_M_CONVENTION": Key("relative", one_of(DELTA_M_CONVENTIONS)),
})


@CONFIG_KEYS.rule("TEST.DENSE.DELTA_M_METRICS", "TEST.DENSE.BASELINES")
def _delta_m_needs_baselines(cfg):
    if cfg.TEST.DENSE.DELTA_M_METRICS and not cfg.TEST.DENSE.BASELINES:
        fail("TEST.DENSE.DELTA_M_METRICS", cfg.TEST.DENSE.DELTA_M_METRICS,
             "delta_m needs the single-task results of cfg.TEST.DENSE.BASELINES = ''")


class DenseMultiTaskEvaluator(DatasetEvaluator):
    """Split-level metrics of dense predictions, optionally with the multi-task gain delta_m.

    ``process`` reads, per image, the ground truth ``input[task]`` and the prediction
    ``output[task]`` at the same resolution, for each task of ``tasks``; the task's descriptor
    turns them into sums over the split and the sums into metrics (see the descriptors of
    ``sta_d2.dense_tasks``: sem_seg's mIoU and pixel accuracy from one confusion matrix, depth and
    disparity errors, normal angles).

    An image whose input lacks a task's key does not count for that task; a task no image has
    reports NaN. With ``baselines`` (``{task: {metric: value}}`` or a JSON file of it), the results
    get ``"delta_m": {"delta_m": value}`` over ``delta_m_metrics`` ("task/metric" names; empty:
    every baseline metric the evaluator reports) under ``delta_m_convention``, see
    :func:`multi_task_gain`. Metrics and
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
        delta_m_convention="relative",
    ):
        """
        Args:
            dataset_name (str): the evaluated dataset, for the log and the saved results.
            tasks (list[str]): tasks to evaluate, registered dense task names.
            num_classes (int): classes of the tasks that have classes; defaults to
                ``len(class_names)``.
            class_names (list[str]): names of the classes, for per-class metrics.
            ignore_label (int): label that is not evaluated.
            distributed (bool): gather the accumulated sums of every process to the main one.
            output_dir (str): where to save the results as JSON (None: not saved).
            baselines (dict or str): single-task baselines for delta_m (None: no delta_m).
            delta_m_metrics (list[str]): "task/metric" names entering delta_m.
            delta_m_convention (str): one of ``DELTA_M_CONVENTIONS``.
        """
        self._logger = logging.getLogger(__name__)
        self._dataset_name = dataset_name
        self._tasks = list(tasks)
        unknown = [t for t in self._tasks if t not in dense_task_names()]
        if not self._tasks or unknown or len(set(self._tasks)) != len(self._tasks):
            raise ValueError(
                f"dense evaluation of {dataset_name!r}: tasks {self._tasks} must be distinct "
                f"names among {dense_task_names()}"
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
        self._num_classes = num_classes
        self._class_names = class_names
        self._ignore_label = ignore_label
        self._distributed = distributed
        self._output_dir = output_dir
        context = {"num_classes": num_classes, "class_names": class_names, "ignore_value": ignore_label}
        self._dense_tasks = {t: build_dense_task(t, **context) for t in self._tasks}
        try:
            self.reset()
        except ValueError as e:
            raise ValueError(f"dense evaluation of {dataset_name!r}: {e}") from e

        self._baselines = self._delta_m_metrics = None
        if delta_m_convention not in DELTA_M_CONVENTIONS:
            raise ValueError(f"dense evaluation of {dataset_name!r}: delta_m convention {delta_m_convention!r} "
                             f"is not one of {DELTA_M_CONVENTIONS}")
        self._delta_m_convention = delta_m_convention
        if baselines is not None:
            self._baseline_source = (
                os.fspath(baselines) if isinstance(baselines, (str, os.PathLike)) else "dict"
            )
            self._baselines = load_baselines(baselines)
            reported = {name: dict.fromkeys(task.metric_names()) for name, task in self._dense_tasks.items()}
            self._delta_m_metrics = select_delta_m_metrics(
                reported, self._baselines, delta_m_metrics
            )
        elif delta_m_metrics:
            raise ValueError(
                f"dense evaluation of {dataset_name!r}: delta_m metrics {list(delta_m_metrics)} "
                "given without baselines"
            )

    def reset(self):
        self._sums = {name: {"images": 0, **task.new_sums()} for name, task in self._dense_tasks.items()}

    def process(self, inputs, outputs):
        """Add each image's pixels to the sums of every task its input has ground truth for."""
        for input, output in zip(inputs, outputs):
            for name, task in self._dense_tasks.items():
                if name not in input:
                    continue
                where = f"{name} of image {input.get('image_id', '?')!r}"
                if name not in output:
                    raise ValueError(f"{where}: ground truth given but no prediction")
                pred = task.as_label(output[name].detach(), where).cpu()
                gt = torch.as_tensor(input[name]).cpu()
                if pred.shape != gt.shape:
                    raise ValueError(
                        f"{where}: prediction of shape {tuple(pred.shape)} does not match the "
                        f"ground truth of shape {tuple(gt.shape)}"
                    )
                sums = self._sums[name]
                sums["images"] += 1
                for key, value in task.image_sums(pred, gt, where).items():
                    sums[key] = sums[key] + value

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
        results = OrderedDict()
        for name, task in self._dense_tasks.items():
            if sums[name]["images"] == 0:
                self._logger.warning(
                    f"dense evaluation of {self._dataset_name}: no image has {name} ground truth; "
                    f"its metrics are NaN"
                )
            results[name] = task.metrics(sums[name])
        counts = ", ".join(f"{task} on {sums[task]['images']} images" for task in self._tasks)
        self._logger.info(f"Dense evaluation of {self._dataset_name}: {counts}")

        report = {"dataset": self._dataset_name, "images": {t: sums[t]["images"] for t in sums}}
        if self._baselines is not None:
            convention = self._delta_m_convention
            value = multi_task_gain(results, self._baselines, self._delta_m_metrics, convention=convention)
            results["delta_m"] = {"delta_m": value}
            used = OrderedDict()
            for name in self._delta_m_metrics:
                task, _, metric = name.partition("/")
                used[name] = self._baselines[task][metric]
            self._logger.info(
                f"delta_m = {value:.4f} ({convention} convention, {DELTA_M_UNITS[convention]}) over "
                f"{len(used)} metrics against the baselines "
                f"{self._baseline_source}: "
                + ", ".join(f"{name} (baseline {base:g})" for name, base in used.items())
            )
            report["delta_m"] = {"convention": convention, "metrics": used, "baselines": self._baseline_source}
        report["results"] = results
        self._logger.info(dict(results))
        if self._output_dir:
            PathManager.mkdirs(self._output_dir)
            with PathManager.open(os.path.join(self._output_dir, RESULTS_FILE), "w") as f:
                json.dump(report, f, indent=2)
        return results


def build_dense_evaluator(cfg, dataset_name, output_folder=None):
    """A :class:`DenseMultiTaskEvaluator` for ``dataset_name`` from the config and the metadata.

    Tasks: ``cfg.MODEL.DENSE.TASKS`` (the model's), or, when the config has none, the metadata's
    ``dense_tasks``. Classes and ignore label: the metadata's ``stuff_classes`` and
    ``ignore_label`` (default 255). delta_m: ``cfg.TEST.DENSE.BASELINES`` (a JSON file; empty: no
    delta_m), ``cfg.TEST.DENSE.DELTA_M_METRICS`` and ``cfg.TEST.DENSE.DELTA_M_CONVENTION``. ``output_folder`` defaults to
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
    if output_folder is None:
        output_folder = os.path.join(cfg.OUTPUT_DIR, "inference")
    return DenseMultiTaskEvaluator(
        dataset_name,
        tasks,
        class_names=meta.get("stuff_classes"),
        ignore_label=meta.get("ignore_label", 255),
        output_dir=output_folder,
        baselines=cfg.TEST.DENSE.BASELINES or None,
        delta_m_metrics=list(cfg.TEST.DENSE.DELTA_M_METRICS),
        delta_m_convention=cfg.TEST.DENSE.DELTA_M_CONVENTION,
    )
