"""Reports over training runs: the paper's results table and per-task training loss curves.

A run is a detectron2 ``OUTPUT_DIR``. Everything is read from its ``metrics.json`` (detectron2's
JSONWriter: one JSON dict of scalars per line, with its ``iteration``), the one file to which every
evaluator sta_d2 uses (dense, COCO, semantic segmentation, Cityscapes) writes its numbers: the
EvalHook flattens the evaluation results to "<task>/<metric>" scalars ("sem_seg/mIoU", "bbox/AP"),
and sta_d2's trainer logs the training loss of each task as "task_loss/<task>".
"""
import csv
import json
import math
import os
from collections import OrderedDict
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

from detectron2.utils.file_io import PathManager
from matplotlib.figure import Figure  # rendered by the Agg backend, no pyplot state
from matplotlib.ticker import FormatStrFormatter, LogLocator

from ..dense_tasks import dense_task_names, get_dense_task
from ..evaluation.multitask_gain import (
    DELTA_M_UNITS,
    HIGHER_IS_BETTER_PREFIXES,
    load_baselines,
    lower_is_better,
    multi_task_gain,
)

# The columns of detectron2's evaluators for R-CNN runs: SemSegEvaluator's pixel accuracy (after
# the dense sem_seg columns) and COCOEvaluator's box and mask APs.
DETECTRON2_COLUMNS = OrderedDict(sem_seg=("pACC",), bbox=("AP", "AP50", "AP75"), segm=("AP", "AP50", "AP75"))
BASELINE_NAME = "single-task"
MISSING = "–"
DELTA_M_FORMULAS = {
    "paper": "(1/T) Σ_t (1/|M_t|) Σ_m ±(M_m − B_m), raw differences",
    "relative": "(1/T) Σ_t (1/|M_t|) Σ_m ±(M_m − B_m) / B_m × 100",
    "flat": "(1/|M|) Σ_m ±(M_m − B_m) / B_m × 100",
}
FILES = {"markdown": "report.md", "csv": "report.csv", "losses": "losses.png"}
PANEL_SIZE, PANELS_PER_ROW, DPI = (5.0, 3.6), 3, 100


def main_columns():
    """task -> the columns it gets by default, in the order of the paper's tables: each dense
    task's ``REPORT_COLUMNS`` in registration order (NYUv2-13: mIoU, pixel accuracy, depth abs/rel
    error, normal angle mean/median/within), then detectron2's evaluators'."""
    columns = OrderedDict((name, get_dense_task(name).REPORT_COLUMNS) for name in dense_task_names())
    for task, metrics in DETECTRON2_COLUMNS.items():
        columns[task] = columns.get(task, ()) + metrics
    return columns


def better_direction(metric, task=None):
    """"↓" when a lower value of ``metric`` (of ``task``, see :func:`lower_is_better`) is better,
    "↑" when a higher one is, None for names no evaluator reports (such as the training scalars
    "task_loss/<task>")."""
    try:
        return "↓" if lower_is_better(metric, task) else "↑"
    except ValueError:
        return None


def _column_direction(column):
    """:func:`better_direction` of a "task/metric" column."""
    task, _, metric = column.partition("/")
    return better_direction(metric, task)


def _is_summary(metric, task):
    return better_direction(metric, task) is not None and not metric.startswith(HIGHER_IS_BETTER_PREFIXES)


@dataclass
class Run:
    """A run's final evaluation ``{task: {metric: value}}`` at ``iteration`` and its training
    losses ``{task: [(iteration, loss), ...]}``."""

    name: str
    path: str
    iteration: int
    results: Dict[str, Dict[str, float]]
    losses: Dict[str, List[Tuple[int, float]]]


def read_metrics(run_dir):
    """The rows of ``run_dir/metrics.json``, in file order."""
    path = os.path.join(run_dir, "metrics.json")
    if not PathManager.isfile(path):
        raise FileNotFoundError(f"{path} does not exist: is {run_dir!r} a detectron2 OUTPUT_DIR?")
    rows = []
    with PathManager.open(path) as f:
        for number, line in enumerate(f, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise ValueError(f"{path}, line {number}, is not a JSON dict: {e}") from e
    return rows


def load_run(run_dir, name=None):
    """The :class:`Run` of ``run_dir`` (``name``: default the folder's name).

    Its results are the "<task>/<metric>" scalars with a known direction (:func:`better_direction`)
    of the last row that has any: detectron2 writes the evaluation of the final model last, and a
    resumed run appends to the file. Losses are the "task_loss/<task>" scalars as JSONWriter wrote
    them (every 20 iterations, the median of the last 20); an iteration written twice (a resumed
    run redoes the steps after its last checkpoint) keeps its last value.
    """
    rows = read_metrics(run_dir)
    name = name or os.path.basename(os.path.normpath(run_dir))
    losses = OrderedDict()
    for row in rows:
        for key, value in row.items():
            if key.startswith("task_loss/"):
                losses.setdefault(key.partition("/")[2], {})[row["iteration"]] = value
    losses = OrderedDict((task, sorted(points.items())) for task, points in losses.items())
    for row in reversed(rows):
        results = OrderedDict()
        for key, value in row.items():
            task, sep, metric = key.partition("/")
            if sep and better_direction(metric, task):
                results.setdefault(task, OrderedDict())[metric] = value
        if results:
            return Run(name, run_dir, row["iteration"], results, losses)
    raise ValueError(
        f"{run_dir}/metrics.json has no evaluation results: the run logs them when it evaluates "
        "(TEST.EVAL_PERIOD, and after the last iteration); --eval-only does not write metrics.json"
    )


def collect_baselines(sources):
    """Single-task baselines ``{task: {metric: value}}`` and the runs they come from.

    Each source is a run directory, whose final evaluation gives the baselines of the task(s) it
    evaluates, or a JSON file as ``TEST.DENSE.BASELINES`` reads it (:func:`load_baselines`). A task
    given by two sources raises.
    """
    baselines, runs, given_by = OrderedDict(), [], {}
    for source in sources:
        if PathManager.isdir(source):
            run = load_run(source, BASELINE_NAME)
            runs.append(run)
            part = run.results
        else:
            part = load_baselines(source)
        for task, metrics in part.items():
            if task in baselines:
                raise ValueError(f"baselines: task {task!r} is given by both {given_by[task]} and {source}")
            baselines[task], given_by[task] = metrics, source
    return load_baselines(baselines), runs


def default_columns(results):
    """The "task/metric" columns for a list of ``{task: {metric: value}}``: per task (those of
    :func:`main_columns` first, in its order) its main metrics that some result has or, when it
    has none of them, all its summary metrics (per-class metrics left out)."""
    have = OrderedDict()
    for result in results:
        for task, metrics in result.items():
            have.setdefault(task, OrderedDict()).update(dict.fromkeys(metrics))
    main_metrics = main_columns()
    tasks = [t for t in main_metrics if t in have] + [t for t in have if t not in main_metrics]
    columns = []
    for task in tasks:
        main = [m for m in main_metrics.get(task, ()) if m in have[task]]
        columns += [f"{task}/{m}" for m in main or [m for m in have[task] if _is_summary(m, task)]]
    return columns


@dataclass
class ResultsTable:
    """Rows ``(method, {column: value}, delta_m)`` over "task/metric" ``columns``; ``delta_m_metrics``
    is None without baselines (no Δm column). A value or Δm the run does not have is absent / None."""

    columns: List[str]
    rows: List[Tuple[str, Dict[str, float], Optional[float]]]
    delta_m_metrics: Optional[List[str]]
    delta_m_convention: str = "relative"

    def header(self):
        """Column titles with the better direction of each metric (↑ higher, ↓ lower)."""
        titles = ["method"]
        for column in self.columns:
            arrow = _column_direction(column)
            titles.append(f"{column} {arrow}" if arrow else column)
        unit = DELTA_M_UNITS[self.delta_m_convention]
        delta_m = f"Δm ({self.delta_m_convention}, {'%' if unit == '%' else 'raw'}) ↑"
        return titles + ([delta_m] if self.delta_m_metrics is not None else [])


def _value(results, column):
    task, _, metric = column.partition("/")
    return results.get(task, {}).get(metric)


def results_table(runs, baselines=None, metrics=None, delta_m_metrics=None, delta_m_convention="relative"):
    """The :class:`ResultsTable` of ``runs`` (:class:`Run`), led by a "single-task" row of the
    ``baselines`` when given.

    Columns: ``metrics`` ("task/metric" names), by default :func:`default_columns`. Δm (with
    baselines): :func:`multi_task_gain` over ``delta_m_metrics``, by default the columns that have a
    baseline and a direction known to multitask_gain, under ``delta_m_convention``; a run lacking
    one of them gets no Δm (a gain over fewer metrics would not compare).
    """
    for name in list(metrics or ()) + list(delta_m_metrics or ()):
        if not all(name.partition("/")):
            raise ValueError(f"metric {name!r} is not of the form 'task/metric'")
    entries = [(BASELINE_NAME, baselines)] if baselines else []
    entries += [(run.name, run.results) for run in runs]
    columns = list(metrics) if metrics else default_columns([results for _, results in entries])
    names = None
    if baselines:
        if delta_m_metrics:
            names = list(delta_m_metrics)
            for name in names:
                if _value(baselines, name) is None:
                    raise ValueError(f"Δm metric {name!r} has no single-task baseline")
        else:
            names = [c for c in columns
                     if _value(baselines, c) is not None and _column_direction(c)]
    rows = []
    for method, results in entries:
        gain = None
        if names and all(_value(results, name) is not None for name in names):
            gain = multi_task_gain(results, baselines, names, convention=delta_m_convention)
        rows.append((method, {c: _value(results, c) for c in columns if _value(results, c) is not None}, gain))
    return ResultsTable(columns, rows, names, delta_m_convention)


def _decimals(values):
    """4 decimals for a column of values below 1 in magnitude (errors in metres), else 2."""
    finite = [abs(v) for v in values if v is not None and math.isfinite(v)]
    return 4 if finite and max(finite) < 1 else 2


def to_markdown(table, notes=()):
    """The table in markdown, values rounded (missing ones "–"), followed by ``notes`` lines."""
    decimals = [_decimals([values.get(c) for _, values, _ in table.rows]) for c in table.columns]
    header = table.header()
    lines = ["| " + " | ".join(header) + " |", "| --- |" + " ---: |" * (len(header) - 1)]
    for method, values, gain in table.rows:
        cells = [method] + [
            MISSING if values.get(c) is None else f"{values[c]:.{d}f}" for c, d in zip(table.columns, decimals)
        ]
        if table.delta_m_metrics is not None:
            cells.append(MISSING if gain is None else f"{gain:+.2f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n\n".join(["\n".join(lines), *notes]) + "\n"


def write_csv(table, path):
    """The table as CSV: the same header, values unrounded, missing ones empty."""
    with PathManager.open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(table.header())
        for method, values, gain in table.rows:
            row = [method] + [values.get(c, "") for c in table.columns]
            writer.writerow(row + ([("" if gain is None else gain)] if table.delta_m_metrics is not None else []))


def plot_task_losses(runs, path):
    """A PNG of the training losses: one panel per task, one line per run that logs the task
    (legend: the run's name, one colour per name), loss on a log scale over the iteration
    (optimizer step), ``PANEL_SIZE * DPI`` pixels per panel."""
    tasks = list(OrderedDict.fromkeys(task for run in runs for task in run.losses))
    if not tasks:
        raise ValueError("no run logs task_loss/<task> scalars: were they trained by sta_d2's STATrainer?")
    colors = {}
    for run in runs:
        colors.setdefault(run.name, f"C{len(colors) % 10}")
    ncols = min(len(tasks), PANELS_PER_ROW)
    nrows = math.ceil(len(tasks) / ncols)
    fig = Figure(figsize=(PANEL_SIZE[0] * ncols, PANEL_SIZE[1] * nrows), dpi=DPI, layout="constrained")
    fig.suptitle("Training loss per task (task_loss/<task> of metrics.json, median of 20 iterations)")
    axes = list(fig.subplots(nrows, ncols, squeeze=False).flat)
    for ax, task in zip(axes, tasks):
        for run in runs:
            if task in run.losses:
                iterations, losses = zip(*run.losses[task])
                ax.plot(iterations, losses, color=colors[run.name], label=run.name, linewidth=1.5)
        ax.set(title=task, xlabel="iteration (optimizer step)", ylabel="training loss", yscale="log")
        # label 1, 2 and 5 of each decade: a loss often spans less than two decades
        ax.yaxis.set_minor_locator(LogLocator(subs=(2, 5)))
        for axis_ticks in (ax.yaxis.set_major_formatter, ax.yaxis.set_minor_formatter):
            axis_ticks(FormatStrFormatter("%g"))
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize="small")
    for ax in axes[len(tasks):]:
        ax.set_visible(False)  # the panels left over in the last row
    fig.savefig(path)


def write_report(run_dirs, output_dir, baselines=(), names=None, metrics=None, delta_m_metrics=None,
                 delta_m_convention="relative"):
    """Write ``report.md``, ``report.csv`` and ``losses.png`` (when some run logs task losses) of
    ``run_dirs`` to ``output_dir``; return ``{"markdown"|"csv"|"losses": path}`` of those written.

    ``baselines``: single-task run directories and/or baseline JSON files
    (:func:`collect_baselines`); their runs join the loss plot as "single-task". ``names``: the
    methods, by default the folders' names. ``metrics``, ``delta_m_metrics`` and
    ``delta_m_convention``: see :func:`results_table`.
    """
    if names is not None and len(names) != len(run_dirs):
        raise ValueError(f"{len(names)} names for {len(run_dirs)} runs")
    runs = [load_run(d, n) for d, n in zip(run_dirs, names or [None] * len(run_dirs))]
    baseline_values, baseline_runs = collect_baselines(baselines) if baselines else (None, [])
    methods = [run.name for run in runs] + ([BASELINE_NAME] if baselines else [])
    if len(set(methods)) != len(methods):
        raise ValueError(f"method names {methods} must be distinct (set them with names)")
    table = results_table(runs, baseline_values, metrics, delta_m_metrics, delta_m_convention)

    notes = ["↑ higher is better, ↓ lower is better; – not reported by the run."]
    if table.delta_m_metrics is not None:
        over = ", ".join(table.delta_m_metrics) or "no metric (none shown has a baseline and a known direction)"
        notes.append(f"Δm: the {delta_m_convention!r} convention ({DELTA_M_FORMULAS[delta_m_convention]}, − where "
                     f"lower is better) over {over}; baselines B: {', '.join(baselines)}.")
    notes.append("Final evaluation in metrics.json of: " + "; ".join(
        f"{run.name} = {run.path} (iteration {run.iteration})" for run in baseline_runs + runs))
    PathManager.mkdirs(output_dir)
    paths = {kind: os.path.join(output_dir, name) for kind, name in FILES.items()}
    with PathManager.open(paths["markdown"], "w") as f:
        f.write(to_markdown(table, notes))
    write_csv(table, paths["csv"])
    if any(run.losses for run in baseline_runs + runs):
        plot_task_losses(baseline_runs + runs, paths["losses"])
    else:
        del paths["losses"]
    return paths
