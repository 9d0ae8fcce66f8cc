"""sta_d2's datasets, registered on import under ``$DETECTRON2_DATASETS`` (default ./datasets),
the root detectron2 uses for its builtin datasets. See datasets/README.md for the layouts."""
import os

from .cityscapes import (
    cityscapes_inst_sem_metadata,
    load_cityscapes_inst_sem,
    register_all_cityscapes_inst_sem,
    register_cityscapes_inst_sem,
)
from .shapes import register_all_shapes, register_coco_instances_checked

_root = os.getenv("DETECTRON2_DATASETS", "datasets")
register_all_shapes(_root)
register_all_cityscapes_inst_sem(_root)
