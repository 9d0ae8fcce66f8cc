"""CheckedDatasetMapper: detectron2's DatasetMapper whose errors on broken inputs name the file."""
from detectron2.data import DatasetMapper, MetadataCatalog
from detectron2.data import detection_utils as utils
from PIL import Image

#: dataset-dict fields naming the image files DatasetMapper reads
IMAGE_FILE_KEYS = ("file_name", "sem_seg_file_name")


def _read_error(path):
    """The exception reading ``path`` as detectron2 does raises, or None if it decodes."""
    try:
        utils.read_image(path)
    except Exception as e:  # whatever PIL raises on a broken file (OSError, SyntaxError, ...)
        return e
    return None


def _has_segmentation(annotation):
    """Whether an annotation has a mask: polygons (a non-empty list), an RLE or an array."""
    segm = annotation.get("segmentation")
    return segm is not None and not (isinstance(segm, list) and not segm)


class CheckedDatasetMapper(DatasetMapper):
    """detectron2's DatasetMapper (the inputs of the R-CNN models) that rejects broken inputs
    with an error naming the file, where detectron2 raises an error that does not name it or
    goes on with inconsistent targets. Nothing is skipped: a broken file stops the run.

    - An image or ``sem_seg_file_name`` that does not decode (truncated, not an image): PIL's
      error names no file for a truncated one; when mapping fails, the files of the dict are
      read again and the first that does not decode is named (ValueError).
    - A ``sem_seg_file_name`` whose size differs from the dict's ``width`` and ``height``
      (ValueError; detectron2 would fail in a resize assertion or pass it on).
    - In training with instance masks (``use_instance_mask``), a non-crowd annotation without a
      segmentation (missing or empty): ValueError naming the image, where detectron2 raises a
      KeyError or leaves the image without ``gt_masks``.
    - In training with instance masks as polygons (``INPUT.MASK_FORMAT`` "polygon"), a non-crowd
      mask that is not polygons (an RLE, an array): ValueError naming the image and the key,
      where detectron2's error names neither. For a training set loaded with
      :func:`sta_d2.data.datasets.register_coco_instances_checked` (metadata ``rle_annotations``)
      this is raised when the mapper is built from the config, naming the annotation file and
      annotation ids, so before the first step when the datasets are loaded first (STATrainer).

    detectron2 itself raises a ``SizeMismatchError`` naming the image when the image's size
    differs from the dict's ``width`` and ``height``, and a FileNotFoundError naming a missing
    file.
    """

    @classmethod
    def from_config(cls, cfg, is_train=True):
        ret = super().from_config(cfg, is_train)
        if is_train and ret["use_instance_mask"] and ret["instance_mask_format"] == "polygon":
            for name in cfg.DATASETS.TRAIN:
                meta = MetadataCatalog.get(name)
                if meta.get("rle_annotations"):
                    raise ValueError(
                        f"dataset {name!r}: {meta.json_file} has RLE masks "
                        f"({meta.rle_annotations}), which INPUT.MASK_FORMAT 'polygon' "
                        "(detectron2's default) cannot train; set INPUT.MASK_FORMAT bitmask"
                    )
        return ret

    def __call__(self, dataset_dict):
        if self.is_train and self.use_instance_mask:
            self._check_segmentations(dataset_dict)
        try:
            self._check_label_size(dataset_dict)
            return super().__call__(dataset_dict)
        except FileNotFoundError:
            raise
        except Exception as e:
            for key in IMAGE_FILE_KEYS:
                error = key in dataset_dict and _read_error(dataset_dict[key])
                if error:
                    raise ValueError(f"{dataset_dict[key]}: not a readable image "
                                     f"({type(error).__name__}: {error})") from e
            raise

    @staticmethod
    def _check_label_size(dataset_dict):
        path = dataset_dict.get("sem_seg_file_name")
        if path is None or "width" not in dataset_dict:
            return
        with Image.open(path) as label:  # reads the header only
            size = label.size
        if size != (dataset_dict["width"], dataset_dict["height"]):
            raise ValueError(f"{path}: semantic labels of width x height {size}, but its image "
                             f"{dataset_dict['file_name']} is "
                             f"{(dataset_dict['width'], dataset_dict['height'])}")

    def _check_segmentations(self, dataset_dict):
        annotations = dataset_dict.get("annotations", [])
        trained = [(i, a) for i, a in enumerate(annotations) if not a.get("iscrowd", 0)]
        def which(positions):
            return (f"{dataset_dict['file_name']} (image id {dataset_dict.get('image_id')}): "
                    f"annotation(s) {positions[:5]} (positions in its list of {len(annotations)})")

        missing = [i for i, a in trained if not _has_segmentation(a)]
        if missing:
            raise ValueError(
                f"{which(missing)} have no segmentation, but the model trains instance masks "
                "(MODEL.MASK_ON); give every non-crowd annotation a segmentation or turn masks off"
            )
        not_polygons = [i for i, a in trained if not isinstance(a["segmentation"], list)]
        if not_polygons and self.instance_mask_format == "polygon":
            raise ValueError(
                f"{which(not_polygons)} have masks that are not polygons (RLE or arrays), which "
                "INPUT.MASK_FORMAT 'polygon' (detectron2's default) cannot train; set "
                "INPUT.MASK_FORMAT bitmask"
            )
