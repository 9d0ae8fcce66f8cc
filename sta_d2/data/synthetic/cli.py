"""``python -m sta_d2.data.synthetic``: write a synthetic dataset (see the package docstring)."""
import argparse

from . import EXTRA_SPLIT_LAYOUTS, GENERATORS, __doc__ as USAGE


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m sta_d2.data.synthetic", description=USAGE, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("layout", choices=tuple(GENERATORS))
    parser.add_argument("--root", required=True, help="dataset directory to (re)write")
    parser.add_argument("--num-train", type=int, default=100)
    parser.add_argument("--num-val", type=int, default=20)
    parser.add_argument("--num-train-extra", type=int, default=0,
                        help="also write that many depth-only training images (the train_extra "
                             f"split; layouts {', '.join(EXTRA_SPLIT_LAYOUTS)})")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--image-size", type=int, nargs=2, metavar=("H", "W"), help="default: " +
                        ", ".join(f"{h} {w} ({k})" for k, (_, (h, w)) in GENERATORS.items()))
    args = parser.parse_args(argv)
    if min(args.num_train, args.num_val, args.num_train_extra) < 0:
        parser.error("--num-train, --num-val and --num-train-extra must be >= 0")
    extra = {}
    if args.num_train_extra:
        if args.layout not in EXTRA_SPLIT_LAYOUTS:
            parser.error(f"--num-train-extra: the {args.layout} layout has no extra split; "
                         f"choose one of {', '.join(EXTRA_SPLIT_LAYOUTS)}")
        extra["num_train_extra"] = args.num_train_extra
    generate, size = GENERATORS[args.layout]
    generate(args.root, args.num_train, args.num_val, seed=args.seed,
             image_size=tuple(args.image_size or size), **extra)
    counts = [f"{args.num_train} train", f"{args.num_val} val"]
    counts += [f"{args.num_train_extra} depth-only train_extra"] if extra else []
    print(f"Wrote {', '.join(counts[:-1])} and {counts[-1]} images in the {args.layout} layout "
          f"to {args.root}")

