"""COCO-format datasets whose loading errors name the file at fault; the synthetic shapes set."""
import os

from detectron2.data import DatasetCatalog
from detectron2.data.datasets import register_coco_instances

# name -> (image dir, annotation file), relative to the dataset root
SHAPES_SPLITS = {
    "shapes_train": ("train2017", "annotations/instances_train2017.json"),
    "shapes_val": ("val2017", "annotations/instances_val2017.json"),
}


def _load_checked(stock_loader, name, json_file, image_root, hint):
    """Run detectron2's COCO loader after checking the paths; name the file it fails on."""
    for path, kind in ((json_file, "annotation file"), (image_root, "image directory")):
        if not os.path.exists(path):
            raise FileNotFoundError(f"dataset {name!r}: {kind} {path} does not exist; {hint}")
    try:
        return stock_loader()
    except (ValueError, KeyError, TypeError, AssertionError) as e:
        raise ValueError(
            f"dataset {name!r}: cannot load COCO annotation file {json_file}: "
            f"{type(e).__name__}: {e}"
        ) from e


def register_coco_instances_checked(
    name, json_file, image_root, metadata=None, hint="see datasets/README.md"
):
    """``register_coco_instances``, with loading that checks the paths and names bad files.

    Metadata (json_file, image_root, evaluator_type "coco") is what detectron2 sets; only the
    loader is wrapped, so a missing path is a FileNotFoundError and an unparsable or malformed
    annotation file a ValueError, both naming the path, instead of a bare JSON error.
    ``hint`` ends the message of a missing path.
    """
    register_coco_instances(name, metadata or {}, json_file, image_root)
    stock_loader = DatasetCatalog[name]
    DatasetCatalog.remove(name)
    DatasetCatalog.register(
        name, lambda: _load_checked(stock_loader, name, json_file, image_root, hint)
    )


def register_all_shapes(root):
    """Register ``shapes_train`` and ``shapes_val`` (generated, COCO layout) at ``root/shapes``."""
    shapes = os.path.join(root, "shapes")
    hint = f"generate it with: python -m sta_d2.data.synthetic coco --root {shapes}"
    for name, (image_dir, json_file) in SHAPES_SPLITS.items():
        register_coco_instances_checked(
            name, os.path.join(shapes, json_file), os.path.join(shapes, image_dir), hint=hint
        )
