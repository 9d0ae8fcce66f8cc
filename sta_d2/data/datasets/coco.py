"""COCO-format datasets whose loading errors name the file and annotation at fault."""
import json
import logging
import os

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import register_coco_instances

logger = logging.getLogger(__name__)
_LISTED = 5  # offending annotations an error lists


def _check_coco_annotations(json_file):
    """Raise listing the annotations (ids and image ids) whose category_id is not one of the
    file's categories, whose polygons include one of fewer than three points or whose RLE is
    not of its image's size; log how many images have no annotation and which categories have
    none. Return the non-crowd annotations whose segmentation is an RLE.

    detectron2's loader raises a KeyError that names neither file nor annotation for the first,
    silently drops such polygons (the whole instance, box included, when none is left) for the
    second, and its mapper fails on an assertion naming nothing for the third: all are broken
    annotations to fix, not to train on. Images without annotations are valid (background
    only); training drops them when DATALOADER.FILTER_EMPTY_ANNOTATIONS. A category without
    annotations (e.g. a "background" category some tools write) stays a class of the model.
    """
    with open(json_file) as f:
        coco = json.load(f)
    categories = coco.get("categories", [])
    category_ids = {c["id"] for c in categories}
    image_sizes = {i.get("id"): [i.get("height"), i.get("width")] for i in coco.get("images", [])}
    unknown, degenerate, misfit, rle = [], [], [], []
    for anno in coco.get("annotations", []):
        where = f"id {anno.get('id')} (image id {anno.get('image_id')})"
        if anno.get("category_id") not in category_ids:
            unknown.append(f"{where}: category_id {anno.get('category_id')}")
        segmentation = anno.get("segmentation")
        if isinstance(segmentation, list):  # polygons
            if not all(isinstance(p, list) for p in segmentation):
                degenerate.append(f"{where}: segmentation is not a list of polygons")
            elif any(len(p) < 6 or len(p) % 2 for p in segmentation):
                degenerate.append(
                    f"{where}: polygons of {[len(p) for p in segmentation]} coordinates")
        elif isinstance(segmentation, dict):  # an RLE
            image_size = image_sizes.get(anno.get("image_id"))
            if image_size and list(segmentation.get("size", [])) != image_size:
                misfit.append(f"{where}: RLE size {segmentation.get('size')}, image {image_size}")
            if not anno.get("iscrowd", 0):
                rle.append(where)
    problems = []
    if unknown:
        problems.append(f"{len(unknown)} annotation(s) with a category_id that is not one of the "
                        f"categories' ids {sorted(category_ids)}: {'; '.join(unknown[:_LISTED])}")
    if degenerate:
        problems.append(f"{len(degenerate)} annotation(s) with a polygon of fewer than 3 points "
                        "(a polygon is a list of x, y coordinates: an even number, at least 6): "
                        + "; ".join(degenerate[:_LISTED]))
    if misfit:
        problems.append(f"{len(misfit)} annotation(s) with an RLE whose size (height, width) is "
                        f"not its image's: {'; '.join(misfit[:_LISTED])}")
    if problems:
        raise ValueError(" and ".join(problems) + "; fix or remove them")
    annotated = {anno.get("image_id") for anno in coco.get("annotations", [])}
    empty = sum(image.get("id") not in annotated for image in coco.get("images", []))
    if empty:
        logger.info(f"{json_file}: {empty} of {len(coco.get('images', []))} images have no "
                    "annotation (background only)")
    used = {anno.get("category_id") for anno in coco.get("annotations", [])}
    unused = [f"{c['id']} {c.get('name')!r}" for c in categories if c["id"] not in used]
    if unused:
        logger.info(f"{json_file}: categories without annotations: {', '.join(unused)}; each "
                    "category is a class of the model (R-CNN adds its own background class), so "
                    f"MODEL.ROI_HEADS.NUM_CLASSES counts all {len(categories)}")
    return rle


def _load_checked(stock_loader, name, json_file, image_root, hint):
    """Check the paths and the annotations, then run detectron2's COCO loader; name the file
    at fault when anything fails. Non-crowd RLE annotations are described in the metadata's
    ``rle_annotations``."""
    for path, kind in ((json_file, "annotation file"), (image_root, "image directory")):
        if not os.path.exists(path):
            raise FileNotFoundError(f"dataset {name!r}: {kind} {path} does not exist; {hint}")
    try:
        rle = _check_coco_annotations(json_file)
        dicts = stock_loader()
    except (ValueError, KeyError, TypeError, AssertionError) as e:
        raise ValueError(
            f"dataset {name!r}: cannot load COCO annotation file {json_file}: "
            f"{type(e).__name__}: {e}"
        ) from e
    if rle:
        MetadataCatalog.get(name).set(
            rle_annotations=f"{len(rle)} annotation(s), e.g. {'; '.join(rle[:_LISTED])}")
    return dicts


def register_coco_instances_checked(
    name, json_file, image_root, metadata=None, hint="see datasets/README.md"
):
    """``register_coco_instances``, with loading that checks the paths and names bad files.

    Metadata (json_file, image_root, evaluator_type "coco") is what detectron2 sets; only the
    loader is wrapped, so a missing path is a FileNotFoundError and an unparsable or malformed
    annotation file a ValueError, both naming the path, instead of a bare JSON error. Annotations
    whose category_id is not among the categories, with a polygon of fewer than three points or
    with an RLE not of its image's size are rejected naming their ids
    (:func:`_check_coco_annotations`; this reads the file once more). ``hint`` ends the message
    of a missing path.

    Once loaded, a file with non-crowd RLE masks has the metadata ``rle_annotations`` (their
    count and first ids): a :class:`sta_d2.data.CheckedDatasetMapper` built after loading (as
    STATrainer builds it) then refuses to train them as polygons (``INPUT.MASK_FORMAT``).
    """
    register_coco_instances(name, metadata or {}, json_file, image_root)
    stock_loader = DatasetCatalog[name]
    DatasetCatalog.remove(name)
    DatasetCatalog.register(
        name, lambda: _load_checked(stock_loader, name, json_file, image_root, hint)
    )
