"""COCOEvaluator for annotation files as annotation tools write them."""
import contextlib
import io
import logging

import pycocotools.mask as mask_util
from detectron2.evaluation import COCOEvaluator

logger = logging.getLogger(__name__)


def prepare_coco_ground_truth(coco_api, json_file):
    """Make the ground truth of a pycocotools ``COCO`` scorable by COCOeval; log what changed.

    - An annotation id 0 (tools often number from 0): COCOeval marks an unmatched detection
      with id 0, so a ground truth of id 0 is never matched and AP drops without a warning. All
      annotations are then renumbered 1..N in file order (ids are in neither the predictions nor
      the results).
    - A missing ``iscrowd`` is 0, as detectron2's loader reads it; a missing ``area`` is the
      mask's area (the box's without a segmentation), as COCO defines it. COCOeval raises a
      KeyError for either, after a whole training.
    """
    annotations = coco_api.dataset.get("annotations", [])
    changes = []
    if any(a["id"] == 0 for a in annotations):
        for new_id, anno in enumerate(annotations, 1):
            anno["id"] = new_id
        changes.append("an annotation has id 0, which pycocotools' COCOeval never matches: "
                       f"evaluating with the annotations renumbered 1..{len(annotations)} in "
                       "file order")
    no_crowd = [a for a in annotations if "iscrowd" not in a]
    for anno in no_crowd:
        anno["iscrowd"] = 0
    if no_crowd:
        changes.append(f"{len(no_crowd)} annotation(s) without iscrowd, evaluated as 0")
    no_area = [a for a in annotations if "area" not in a]
    for anno in no_area:
        if anno.get("segmentation"):
            anno["area"] = float(mask_util.area(coco_api.annToRLE(anno)))
        else:
            anno["area"] = float(anno["bbox"][2] * anno["bbox"][3])
    if no_area:
        changes.append(f"{len(no_area)} annotation(s) without area, evaluated with the area of "
                       "their mask (of their box without a segmentation)")
    if changes:
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
            coco_api.createIndex()
        logger.info(f"{json_file}: {'; '.join(changes)}")


class CheckedCOCOEvaluator(COCOEvaluator):
    """detectron2's COCOEvaluator, whose ground truth (read from the metadata's ``json_file``)
    is first made scorable by :func:`prepare_coco_ground_truth`."""

    def __init__(self, dataset_name, *args, **kwargs):
        super().__init__(dataset_name, *args, **kwargs)
        if self._do_evaluation:
            prepare_coco_ground_truth(self._coco_api, self._metadata.json_file)
