"""A paper table next to our runs of it: paper value, ours (mean ± std over seeds), difference,
and delta_m under the ``paper`` and ``relative`` conventions."""
import math
import statistics
from typing import Dict, List, Sequence, Tuple

from ..evaluation.multitask_gain import lower_is_better, multi_task_gain
from .paper_tables import TABLES, PaperSection

# config -> one {"task/metric": value} per seed
Results = Dict[str, List[Dict[str, float]]]


def _mean_std(values: Sequence[float]) -> Tuple[float, float]:
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return math.nan, math.nan
    return statistics.fmean(finite), (statistics.stdev(finite) if len(finite) > 1 else 0.0)


def _nested(flat: Dict[str, float]) -> Dict[str, Dict[str, float]]:
    out: Dict[str, Dict[str, float]] = {}
    for name, value in flat.items():
        task, _, metric = name.partition("/")
        out.setdefault(task, {})[metric] = value
    return out


def our_baseline(section: PaperSection, results: Results) -> Dict[str, float]:
    """Per metric, the mean over seeds of the baseline run that reports it."""
    baseline = {}
    for metric in section.metrics:
        for config in section.baseline_configs:
            mean, _ = _mean_std([r.get(metric, math.nan) for r in results.get(config, [])])
            if math.isfinite(mean):
                baseline[metric] = mean
                break
        else:
            baseline[metric] = math.nan
    return baseline


def _delta_m(values: Dict[str, float], baseline: Dict[str, float], metrics, convention) -> float:
    if not all(math.isfinite(v) for v in (*values.values(), *baseline.values())):
        return math.nan
    return multi_task_gain(_nested(values), _nested(baseline), list(metrics), convention=convention)


def _fmt(value: float, spread: float = None, digits: int = 3) -> str:
    if not math.isfinite(value):
        return "n/a"
    return f"{value:.{digits}f}" + ("" if spread is None else f" ± {spread:.{digits}f}")


def section_rows(section: PaperSection, results: Results) -> List[List[str]]:
    """The rows (header first) of one section: per metric paper / ours / ours - paper, then
    delta_m printed by the paper and ours under the paper and relative conventions."""
    header = ["Method"]
    for metric in section.metrics:
        arrow = "↓" if lower_is_better(*reversed(metric.split("/"))) else "↑"
        header += [f"{metric} {arrow} paper", "ours", "diff"]
    header += ["Δm paper (printed)", "Δm ours (paper conv.)", "Δm ours (relative %)"]
    baseline = our_baseline(section, results)
    lines = [header, ["Single task" if len(section.baseline_configs) > 1 else "Baseline (FT)"]
             + [cell for metric, paper in zip(section.metrics, section.baseline)
                for cell in (_fmt(paper), _fmt(baseline[metric]), _fmt(baseline[metric] - paper))]
             + ["+0.00", _fmt(0.0, digits=2), _fmt(0.0, digits=2)]]
    for row in section.rows:
        runs = results.get(row.config, [])
        line = [row.method]
        for metric, paper in zip(section.metrics, row.values):
            mean, std = _mean_std([r.get(metric, math.nan) for r in runs])
            line += [_fmt(paper), _fmt(mean, std), _fmt(mean - paper)]
        line.append(f"{row.delta_m:+.2f}")
        for convention in ("paper", "relative"):
            gains = [_delta_m({m: r.get(m, math.nan) for m in section.metrics}, baseline, section.metrics,
                              convention) for r in runs]
            line.append(_fmt(*_mean_std(gains), digits=2))
        lines.append(line)
    return lines


def markdown(number: int, results: Results, seeds: Sequence[int], provenance: str) -> str:
    """Table ``number`` next to ``results`` as markdown, with ``provenance`` (what produced
    them) stated above it."""
    table = TABLES[number]
    out = [f"## Table {number}: {table.caption}", "", provenance, "",
           f"Ours: mean ± std over seeds {list(seeds)}; diff = ours - paper; Δm ours against our "
           "own baseline runs (means over seeds), with the paper's metrics.", ""]
    for section in table.sections:
        rows = section_rows(section, results)
        out += [f"### {section.dataset}", ""]
        if section.note:
            out += [f"Note: {section.note}.", ""]
        out.append("| " + " | ".join(rows[0]) + " |")
        out.append("|" + "---|" * len(rows[0]))
        out += ["| " + " | ".join(r) + " |" for r in rows[1:]]
        out.append("")
    return "\n".join(out)


def csv_rows(number: int, results: Results) -> List[List[str]]:
    """The same table as CSV rows, with a leading dataset column."""
    out = []
    for section in TABLES[number].sections:
        rows = section_rows(section, results)
        out += [["dataset"] + rows[0]] if not out else []
        out += [[section.dataset] + r for r in rows[1:]]
    return out
