"""The training set as STATrainer reads it: every image carries a stable dataset index."""
from typing import List, Sequence

from detectron2.data import get_detection_dataset_dicts
from detectron2.data.build import filter_images_with_few_keypoints, filter_images_with_only_crowd_annotations

from .partial_labels import apply_availability, read_availability, simulate_partial_labels

#: key of an image's dataset index in its dataset dict and in the mapped model input
DATASET_INDEX_KEY = "dataset_index"


def training_dataset_dicts(cfg, tasks: Sequence[str] = ()) -> List[dict]:
    """The dataset dicts of ``cfg.DATASETS.TRAIN``, as detectron2's train loader would load them,
    each with its position in the concatenated datasets under :data:`DATASET_INDEX_KEY`.

    Indices are given before detectron2's filters (images with only crowd annotations, too few
    keypoints) run, so an image's index depends only on the datasets, not on the filter
    settings; per-image methods (ILTP) key their parameters and exports by it. Given the model's
    ``tasks``, labels are then dropped as ``cfg.STA.PARTIAL_LABELS`` asks.
    """
    dicts = get_detection_dataset_dicts(
        cfg.DATASETS.TRAIN,
        filter_empty=False,
        proposal_files=cfg.DATASETS.PROPOSAL_FILES_TRAIN if cfg.MODEL.LOAD_PROPOSALS else None,
    )
    num_images = len(dicts)
    for index, record in enumerate(dicts):
        record[DATASET_INDEX_KEY] = index
    if "annotations" in dicts[0]:
        if cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS:
            dicts = filter_images_with_only_crowd_annotations(dicts)
        min_keypoints = cfg.MODEL.ROI_KEYPOINT_HEAD.MIN_KEYPOINTS_PER_IMAGE if cfg.MODEL.KEYPOINT_ON else 0
        if min_keypoints > 0:
            dicts = filter_images_with_few_keypoints(dicts, min_keypoints)
        if not dicts:
            raise ValueError(f"no image of {', '.join(cfg.DATASETS.TRAIN)} has a usable annotation "
                             "(cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS removed them all)")
    partial = cfg.STA.PARTIAL_LABELS
    if tasks and partial.MODE == "file":
        available = read_availability(partial.FILE, num_images, tasks, list(partial.FILE_TASKS))
        dicts = apply_availability(dicts, tasks, available, DATASET_INDEX_KEY)
    elif tasks and partial.MODE:
        dicts = simulate_partial_labels(dicts, tasks, partial.MODE, list(partial.FRACTIONS), partial.SEED)
    return dicts
