"""``python -m sta_d2.data.synthetic``: write a synthetic dataset (see the package docstring)."""
import argparse

from . import GENERATORS, __doc__ as USAGE


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m sta_d2.data.synthetic", description=USAGE, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("layout", choices=tuple(GENERATORS))
    parser.add_argument("--root", required=True, help="dataset directory to (re)write")
    parser.add_argument("--num-train", type=int, default=100)
    parser.add_argument("--num-val", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--image-size", type=int, nargs=2, metavar=("H", "W"), help="default: " +
                        ", ".join(f"{h} {w} ({k})" for k, (_, (h, w)) in GENERATORS.items()))
    args = parser.parse_args(argv)
    if min(args.num_train, args.num_val) < 0:
        parser.error("--num-train and --num-val must be >= 0")
    generate, size = GENERATORS[args.layout]
    generate(args.root, args.num_train, args.num_val, seed=args.seed,
             image_size=tuple(args.image_size or size))
    print(f"Wrote {args.num_train} train and {args.num_val} val images in the {args.layout} "
          f"layout to {args.root}")

