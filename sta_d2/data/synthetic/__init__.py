"""Small synthetic datasets written in the exact on-disk layouts of COCO, Cityscapes and NYUv2.

Nothing can be downloaded on the machines sta_d2 is developed on, so the loaders, evaluators and
the CPU demos run on generated files that follow the real formats. Objects have distinct colours
and shapes, and dense scenes are a few planar surfaces whose class goes with their colour and
whose depth and normals follow one camera, so that a small model learns them in minutes on a CPU.

    python -m sta_d2.data.synthetic coco --root datasets/shapes --num-train 400 --num-val 50
    python -m sta_d2.data.synthetic cityscapes --root datasets/cityscapes
    python -m sta_d2.data.synthetic cityscapes_npy --root datasets/cityscapes_npy
    python -m sta_d2.data.synthetic nyuv2_13 --root datasets/nyuv2        # mtan's 13-class .npy
    python -m sta_d2.data.synthetic nyud_mt --root datasets/NYUD_MT       # NYUD-MT, 40 classes
    python -m sta_d2.data.synthetic nyuv2_mat --root raw_nyuv2            # the official .mat files

``--num-train-extra N`` (nyuv2_13, nyud_mt) also writes N depth-only training images in the
layout of the partially labelled ``train_extra`` splits (see datasets/README.md).
"""
from .cityscapes import CITYSCAPES_CITIES, generate_cityscapes, generate_cityscapes_npy
from .coco import SHAPE_CATEGORIES, generate_coco_shapes
from .nyuv2 import NYU_40_TO_13, generate_nyud_mt, generate_nyuv2_13, generate_nyuv2_mat, nyud_mt_id

# layout -> (generator, default image size)
GENERATORS = {
    "coco": (generate_coco_shapes, (128, 128)),
    "cityscapes": (generate_cityscapes, (128, 256)),
    "cityscapes_npy": (generate_cityscapes_npy, (64, 128)),
    "nyuv2_13": (generate_nyuv2_13, (72, 96)),
    "nyud_mt": (generate_nyud_mt, (72, 96)),
    "nyuv2_mat": (generate_nyuv2_mat, (72, 96)),
}
# layouts whose generator also writes a depth-only ``train_extra`` split (``num_train_extra``)
EXTRA_SPLIT_LAYOUTS = ("nyuv2_13", "nyud_mt")
