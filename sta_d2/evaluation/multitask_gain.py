"""Multi-task gain (delta_m) of a multi-task model over single-task baselines, by convention.

With B the single-task baseline, M_t the metrics of task t that enter, T the number of tasks with
at least one such metric, M all of them, and s_m = -1 when lower is better (else +1); positive is
better in every convention:

- ``"paper"``: delta_m = 1/T sum_t 1/|M_t| sum_{m in M_t} s_m (M_m - B_m), raw differences in the
  metrics' units (the STA/ISTA paper's Tables 1-7, one metric per task there: depth RMSE or
  disparity L1, and mIoU; four AP metrics for Mask R-CNN).
- ``"relative"``: delta_m = 1/T sum_t 1/|M_t| sum_{m in M_t} s_m (M_m - B_m) / B_m * 100, in %: the
  relative change averaged per task first (MTI-Net, LibMTL).
- ``"flat"``: delta_m = 1/|M| sum_{m in M} s_m (M_m - B_m) / B_m * 100, in %: the relative change
  averaged over all metrics at once (Nash-MTL, FAMO on the 3-task NYUv2).

Metrics are named "task/metric", as in the flattened evaluation results ("depth/abs_err").
"""
import json
import math
import os
from collections import OrderedDict

from ..dense_tasks import dense_task_names, get_dense_task

# The summary metrics of detectron2's COCO, semantic segmentation and Cityscapes evaluators, all
# better when higher (the dense tasks' metrics come with their descriptors, see DenseTask.METRICS).
HIGHER_IS_BETTER = frozenset(
    {"AP", "AP50", "AP75", "APs", "APm", "APl", "mIoU", "fwIoU", "mACC", "pACC", "IoU", "iIoU",
     "IoU_sup", "iIoU_sup"}
)
# Per-class metrics ("AP-<class>", "IoU-<class>", "ACC-<class>") improve upwards too.
HIGHER_IS_BETTER_PREFIXES = ("AP-", "IoU-", "ACC-")


def lower_is_better(metric, task=None):
    """Whether a smaller value of ``metric`` is better: as the dense task ``task`` declares it
    (the "task" of a "task/metric" name), else as any dense task reporting ``metric`` does, else
    as detectron2's evaluators have it. Unknown names raise."""
    names = dense_task_names()
    for name in ([task] if task in names else []) + names:
        directions = get_dense_task(name).METRICS
        if metric in directions:
            return directions[metric]
    if metric in HIGHER_IS_BETTER or metric.startswith(HIGHER_IS_BETTER_PREFIXES):
        return False
    dense = sorted({m for name in names for m in get_dense_task(name).METRICS})
    raise ValueError(
        f"delta_m: no known direction for metric {metric!r}; the dense tasks declare {dense}, "
        f"detectron2's evaluators have {sorted(HIGHER_IS_BETTER)} and per-class "
        f"{', '.join(p + '<class>' for p in HIGHER_IS_BETTER_PREFIXES)} (higher is better)"
    )


def load_baselines(source):
    """Single-task baselines ``{task: {metric: value}}`` from a dict or the path of a JSON file."""
    if isinstance(source, (str, os.PathLike)):
        where = f"baseline file {os.fspath(source)!r}"
        if not os.path.isfile(source):
            raise FileNotFoundError(f"delta_m {where} does not exist")
        with open(source) as f:
            try:
                baselines = json.load(f)
            except json.JSONDecodeError as e:
                raise ValueError(f"delta_m {where} is not valid JSON: {e}") from e
    else:
        baselines, where = source, "baselines"
    if not isinstance(baselines, dict):
        raise ValueError(f"delta_m {where} must map task -> {{metric: value}}")
    checked = OrderedDict()
    for task, metrics in baselines.items():
        if not isinstance(metrics, dict):
            raise ValueError(f"delta_m {where}: task {task!r} must map metric -> value")
        for metric, value in metrics.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"delta_m {where}: {task}/{metric} = {value!r} is not a number")
        checked[task] = OrderedDict((m, float(v)) for m, v in metrics.items())
    return checked


def _split(name):
    task, sep, metric = name.partition("/")
    if not (sep and task and metric):
        raise ValueError(f"delta_m metric {name!r} is not of the form 'task/metric'")
    return task, metric


def select_delta_m_metrics(results, baselines, metrics=None):
    """The "task/metric" names delta_m uses, each checked.

    ``metrics`` (names "task/metric") must all be in ``results`` and ``baselines`` and have a known
    direction; when empty or None, every baseline metric that ``results`` has is used. Only the keys
    of ``results`` and ``baselines`` (``{task: {metric: ...}}``) are read.
    """
    if metrics:
        names = list(metrics)
        for name in names:
            task, metric = _split(name)
            if metric not in results.get(task, {}):
                have = [f"{t}/{m}" for t, ms in results.items() if isinstance(ms, dict) for m in ms]
                raise ValueError(f"delta_m metric {name!r} is not among the results {have}")
            if metric not in baselines.get(task, {}):
                raise ValueError(f"delta_m metric {name!r} has no baseline value")
    else:
        names = [
            f"{task}/{metric}"
            for task, ms in baselines.items()
            for metric in ms
            if isinstance(results.get(task), dict) and metric in results[task]
        ]
        if not names:
            raise ValueError(
                f"delta_m: the baselines ({sorted(baselines)}) share no metric with the results "
                f"({sorted(results)})"
            )
    if len(set(names)) != len(names):
        raise ValueError(f"delta_m metrics {names} name a metric twice")
    for name in names:
        task, metric = _split(name)
        lower_is_better(metric, task)
    return names


DELTA_M_CONVENTIONS = ("paper", "relative", "flat")
#: what a delta_m under each convention is measured in
DELTA_M_UNITS = {"paper": "metric units", "relative": "%", "flat": "%"}


def multi_task_gain(results, baselines, metrics=None, convention="relative"):
    """delta_m of ``results`` over ``baselines`` (both ``{task: {metric: value}}``) under
    ``convention`` (see the module docstring).

    ``metrics`` selects "task/metric" names as in :func:`select_delta_m_metrics`. For the relative
    conventions a baseline of 0 raises (the relative change is undefined); a NaN result gives NaN.
    """
    if convention not in DELTA_M_CONVENTIONS:
        raise ValueError(f"delta_m convention {convention!r}: choose one of {DELTA_M_CONVENTIONS}")
    per_task = OrderedDict()
    for name in select_delta_m_metrics(results, baselines, metrics):
        task, metric = _split(name)
        value, base = float(results[task][metric]), baselines[task][metric]
        change = value - base
        if convention != "paper":
            if base == 0 or not math.isfinite(base):
                raise ValueError(f"delta_m baseline {name} = {base} cannot be divided by")
            change = change / base * 100.0
        sign = -1.0 if lower_is_better(metric, task) else 1.0
        per_task.setdefault(task, []).append(sign * change)
    if convention == "flat":
        changes = [c for group in per_task.values() for c in group]
        return sum(changes) / len(changes)
    return sum(sum(g) / len(g) for g in per_task.values()) / len(per_task)
