#!/usr/bin/env python
"""Reproduce a table of the STA/ISTA paper: list its runs, run them, and write it next to ours.

    tools/reproduce.py --check-paper                 # recompute the paper's delta_m from its rows
    tools/reproduce.py --table 1                     # dry run: the runs and their commands
    tools/reproduce.py --table 1 --run --seeds 3 --num-gpus 8
    tools/reproduce.py --table 1 --run --smoke       # every run shrunk, on generated data (CPU)

Runs go through tools/train_net.py (``--num-gpus``, ``--num-machines``, ``--machine-rank`` and
``--dist-url`` are passed on, and so are trailing KEY VALUE config overrides); a run whose
``model_final.pth`` exists is not run again. The table is written to OUTPUT/table<N>.md and .csv.
"""
import argparse
import csv
import os
import subprocess
import sys

from sta_d2.reproduction import compare, runs
from sta_d2.reproduction.check import check_report
from sta_d2.reproduction.paper_tables import TABLES

CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")
LAUNCH_FLAGS = ("--num-gpus", "--num-machines", "--machine-rank", "--dist-url")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--check-paper", action="store_true", help="recompute every printed delta_m")
    what.add_argument("--table", type=int, choices=sorted(TABLES))
    parser.add_argument("--run", action="store_true", help="run the table's trainings (default: list them)")
    parser.add_argument("--seeds", type=int, default=1, help="number of seeds (0, 1, ...) per run")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny models, a few steps, generated data: a check of the pipeline, "
                             "no result of the paper's datasets")
    parser.add_argument("--output", default="output/reproduce", help="folder of the runs and tables")
    for flag in LAUNCH_FLAGS:
        parser.add_argument(flag, help="passed on to tools/train_net.py")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides of every run")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.check_paper:
        print(check_report())
        return
    output = os.path.join(args.output, f"table{args.table}" + ("_smoke" if args.smoke else ""))
    seeds = list(range(args.seeds))
    launch = [a for flag in LAUNCH_FLAGS for a in (flag, getattr(args, flag[2:].replace("-", "_")))
              if getattr(args, flag[2:].replace("-", "_")) is not None]
    env = dict(os.environ)
    if args.smoke:
        env["DETECTRON2_DATASETS"] = os.path.abspath(os.path.join(output, "datasets"))
        if args.run:
            runs.generate_smoke_data(args.table, env["DETECTRON2_DATASETS"])
    table_runs = runs.table_runs(args.table, seeds, output)
    for run in table_runs:
        opts = (runs.smoke_overrides(run.config, CONFIGS) if args.smoke else []) + list(args.opts)
        command = runs.train_command(run, CONFIGS, launch, opts)
        if not args.run:
            print(" ".join(command))
        elif runs.is_done(run.output_dir):
            print(f"[reproduce] {run.output_dir}: done before, not run again")
        else:
            print(f"[reproduce] {run.config}, seed {run.seed} -> {run.output_dir}", flush=True)
            os.makedirs(run.output_dir, exist_ok=True)
            with open(os.path.join(run.output_dir, "reproduce.log"), "w") as log:
                if subprocess.run(command, env=env, stdout=log, stderr=subprocess.STDOUT).returncode:
                    sys.exit(f"[reproduce] {run.config} (seed {run.seed}) failed: see "
                             f"{os.path.join(run.output_dir, 'reproduce.log')}")
    if not args.run:
        print(f"[reproduce] {len(table_runs)} runs of Table {args.table}; add --run to run them")
        return
    metrics = sorted({m for s in TABLES[args.table].sections for m in s.metrics})
    results = {}
    for run in table_runs:
        results.setdefault(run.config, []).append(runs.final_results(run.output_dir, metrics))
    provenance = (f"Produced by `tools/reproduce.py --table {args.table} --run --seeds {args.seeds}"
                  + (" --smoke`: tiny models trained a few steps on GENERATED data; no number here "
                     "comes from the paper's datasets." if args.smoke else "`."))
    text = compare.markdown(args.table, results, seeds, provenance)
    with open(os.path.join(output, f"table{args.table}.md"), "w") as f:
        f.write(text)
    with open(os.path.join(output, f"table{args.table}.csv"), "w", newline="") as f:
        csv.writer(f).writerows(compare.csv_rows(args.table, results))
    print(text)


if __name__ == "__main__":
    main()
