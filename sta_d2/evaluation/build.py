"""Evaluators chosen from a dataset's ``evaluator_type``, working on CPU-only machines."""
import importlib.machinery
import os

from detectron2.data import MetadataCatalog
from detectron2.evaluation import CityscapesInstanceEvaluator, DatasetEvaluators, SemSegEvaluator

from .coco import CheckedCOCOEvaluator
from .dense import build_dense_evaluator


def has_compiled_ops():
    """Whether ``detectron2._C`` is the compiled C++ extension.

    sta_d2's bootstrap can install detectron2 without its compiled ops, with a pure-Python
    ``detectron2._C`` in their place; a compiled extension module is loaded by Python's
    ``ExtensionFileLoader`` and the stand-in is not.
    """
    from detectron2 import _C

    return isinstance(_C.__spec__.loader, importlib.machinery.ExtensionFileLoader)


def build_evaluator(cfg, dataset_name, output_folder=None):
    """The evaluator(s) for ``MetadataCatalog.get(dataset_name).evaluator_type``.

    "coco" -> CheckedCOCOEvaluator (detectron2's COCOEvaluator scoring annotation ids 0 and
    annotations without area or iscrowd right; its fast C++ AP only when detectron2's compiled
    ops exist);
    "cityscapes_instance" -> CityscapesInstanceEvaluator; "sem_seg" -> SemSegEvaluator;
    "cityscapes_inst_sem" -> both of the last two; "dense" -> DenseMultiTaskEvaluator (see
    :func:`build_dense_evaluator`). Unlike detectron2's tools/train_net.py,
    nothing here requires CUDA. ``output_folder`` defaults to ``cfg.OUTPUT_DIR/inference``.
    """
    if output_folder is None:
        output_folder = os.path.join(cfg.OUTPUT_DIR, "inference")
    evaluator_type = getattr(MetadataCatalog.get(dataset_name), "evaluator_type", None)
    if evaluator_type == "coco":
        return CheckedCOCOEvaluator(
            dataset_name, output_dir=output_folder, use_fast_impl=has_compiled_ops()
        )
    if evaluator_type == "cityscapes_instance":
        return CityscapesInstanceEvaluator(dataset_name)
    if evaluator_type == "sem_seg":
        return SemSegEvaluator(dataset_name, distributed=True, output_dir=output_folder)
    if evaluator_type == "cityscapes_inst_sem":
        return DatasetEvaluators([
            CityscapesInstanceEvaluator(dataset_name),
            SemSegEvaluator(dataset_name, distributed=True, output_dir=output_folder),
        ])
    if evaluator_type == "dense":
        return build_dense_evaluator(cfg, dataset_name, output_folder)
    raise NotImplementedError(
        f"no evaluator for dataset {dataset_name!r} with evaluator_type {evaluator_type!r}; "
        "sta_d2 supports 'coco', 'cityscapes_instance', 'sem_seg', 'cityscapes_inst_sem' and "
        "'dense'"
    )
