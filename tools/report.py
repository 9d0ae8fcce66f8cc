#!/usr/bin/env python
"""Collect the final evaluation of training runs (detectron2 OUTPUT_DIRs) into the paper's results
table, with Δm against single-task runs, and plot their per-task training losses.

    tools/report.py output/demo_dense/ista --baselines output/demo_dense/sem_seg \
        output/demo_dense/depth --output output/report
    tools/report.py out/full out/sta out/ista --names FT STA ISTA --baselines baselines.json \
        --delta-m-metrics sem_seg/mIoU sem_seg/pixAcc depth/abs_err depth/rel_err --output out/report

Writes report.md (markdown table), report.csv and losses.png to --output (see
:func:`sta_d2.reporting.run_report.write_report`) and prints the markdown.
"""
import argparse

from sta_d2.evaluation import DELTA_M_CONVENTIONS
from sta_d2.reporting.run_report import write_report


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR", help="OUTPUT_DIRs of the runs, one row each")
    parser.add_argument("--output", required=True, metavar="DIR", help="where to write the report")
    parser.add_argument("--names", nargs="+", help="method names of the runs (default: their folders' names)")
    parser.add_argument("--baselines", nargs="+", default=(), metavar="RUN_DIR_OR_JSON",
                        help="single-task run directories and/or JSON files {task: {metric: value}} "
                             "(as TEST.DENSE.BASELINES); adds the single-task row and Δm")
    parser.add_argument("--metrics", nargs="+", metavar="TASK/METRIC",
                        help="the table's columns (default: the main metrics of each task)")
    parser.add_argument("--delta-m-metrics", nargs="+", metavar="TASK/METRIC",
                        help="metrics of Δm (default: the columns that have a baseline)")
    parser.add_argument("--delta-m-convention", choices=DELTA_M_CONVENTIONS, default="relative",
                        help="paper: mean raw differences (the STA/ISTA paper); relative: %% per task, "
                             "then over tasks; flat: %% over all metrics")
    args = parser.parse_args()
    paths = write_report(args.runs, args.output, args.baselines, args.names, args.metrics, args.delta_m_metrics,
                         args.delta_m_convention)
    with open(paths["markdown"]) as f:
        print(f.read())
    print("Wrote " + ", ".join(paths.values()))


if __name__ == "__main__":
    main()
