"""Helpers shared by the synthetic dataset generators."""
import os
import shutil

import numpy as np
from PIL import Image

_MARKER = ".sta_d2_synthetic"  # marks a root written here, so regenerating may clear it


def prepare_root(root, subdirs):
    """Clear ``subdirs`` of a root this module wrote before; refuse to touch anything else."""
    if os.path.isdir(root) and os.listdir(root) and not os.path.isfile(os.path.join(root, _MARKER)):
        raise FileExistsError(
            f"{root} is not empty and was not written by sta_d2.data.synthetic; refusing to "
            "overwrite it (it may hold a real dataset): choose another --root"
        )
    for sub in subdirs:
        shutil.rmtree(os.path.join(root, sub), ignore_errors=True)
    os.makedirs(root, exist_ok=True)
    open(os.path.join(root, _MARKER), "w").close()


def noisy(canvas, rng, sigma):
    """The RGB image of ``canvas`` with Gaussian pixel noise."""
    noise = rng.normal(0.0, sigma, (canvas.height, canvas.width, 3))
    pixels = np.asarray(canvas, dtype=np.float32) + noise
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def disjoint(box, boxes, margin):
    """Whether the (x0, y0, x1, y1) ``box`` is more than ``margin`` away from all ``boxes``."""
    return all(box[2] + margin < b[0] or b[2] + margin < box[0] or box[3] + margin < b[1]
               or b[3] + margin < box[1] for b in boxes)


def jitter(colour, rng, amount):
    """``colour`` with each channel moved by up to ``amount``, so instances vary a little."""
    return tuple(int(np.clip(c + rng.integers(-amount, amount + 1), 0, 255)) for c in colour)
