#!/usr/bin/env python
"""Measure ILTP, IAL or JTR against the claim of its paper, on generated data (CPU).

    tools/check_claims.py iltp --seeds 3        # the full protocol (docs/claims.md gives its size)
    tools/check_claims.py jtr --smoke           # a few steps on 16 images: a check of the pipeline

Every run trains the demo SegNet (configs/Demo/Base-nyuv2_segnet.yaml) in this process, seeded,
with no loader worker (sta_d2.reproduction.claims says what each protocol compares). Runs and
data go to OUTPUT/<method> (default output/claims); a run already done is read, not run again.
The table (mean ± std over the seeds) is printed and written to OUTPUT/<method>/claims.md.
"""
import argparse
import os

import torch

from sta_d2.reproduction import claims

CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("method", choices=sorted(claims.PROTOCOLS), help="the method whose claim is measured")
    parser.add_argument("--seeds", type=int, default=3, help="number of seeds (0, 1, ...)")
    parser.add_argument("--smoke", action="store_true",
                        help="16 training images, 3 steps, one corruption fraction: a pipeline check, "
                             "no measurement")
    parser.add_argument("--output", default="output/claims", help="folder of the runs and tables")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.seeds < 1:
        raise SystemExit(f"--seeds {args.seeds}: give at least 1")
    torch.set_num_threads(1)
    size = claims.SMOKE if args.smoke else claims.FULL
    output = os.path.join(args.output, args.method + ("_smoke" if args.smoke else ""))
    results = claims.run(args.method, CONFIGS, output, size, range(args.seeds))
    command = f"tools/check_claims.py {args.method} --seeds {args.seeds}" + (" --smoke" if args.smoke else "")
    provenance = (f"Produced by `{command}` ({size.num_train} training and "
                  f"{size.num_val} validation images at {size.image_size[0]}x{size.image_size[1]}, "
                  f"{size.steps} steps of {size.batch} images; seeds 0..{args.seeds - 1}).")
    text = claims.markdown(args.method, results, size, provenance)
    with open(os.path.join(output, "claims.md"), "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
