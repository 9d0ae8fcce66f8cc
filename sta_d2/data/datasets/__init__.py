"""sta_d2's datasets, registered on import under ``$DETECTRON2_DATASETS`` (default ./datasets),
the root detectron2 uses for its builtin datasets. See datasets/README.md for the layouts."""
import os

from .cityscapes import (
    cityscapes_inst_sem_metadata,
    load_cityscapes_inst_sem,
    register_all_cityscapes_inst_sem,
    register_cityscapes_inst_sem,
)
from .cityscapes_disparity import (
    load_cityscapes_depth_seg,
    load_cityscapes_npy,
    register_all_cityscapes_disparity,
)
from .dense import (
    DENSE_FORMATS,
    dense_tasks_of,
    read_dense_sample,
    register_dense_dataset,
)
from .nyuv2 import (
    NYUV2_13_CLASSES,
    NYUV2_40_CLASSES,
    load_nyud_mt,
    load_nyuv2_13,
    register_all_nyuv2,
    register_nyud_mt,
    register_nyuv2_13,
)
from .coco import register_coco_instances_checked
from .shapes import register_all_shapes

_root = os.getenv("DETECTRON2_DATASETS", "datasets")
register_all_shapes(_root)
register_all_cityscapes_inst_sem(_root)
register_all_nyuv2(_root)
register_all_cityscapes_disparity(_root)
