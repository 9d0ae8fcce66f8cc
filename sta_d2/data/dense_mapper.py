"""DenseDatasetMapper: a dense multi-task dataset dict -> model inputs (image, task targets)."""
import numpy as np
import torch
import torch.nn.functional as F
from detectron2.config import configurable
from detectron2.data import transforms as T

from ..dense_tasks import Geometry, build_dense_task
from ..specs import STAConfigError, ConfigKeys, Key, integer, list_of, number
from .datasets.dense import read_dense_sample
from .training_set import DATASET_INDEX_KEY

CONFIG_KEYS = ConfigKeys({
    # Every image and target is resized to SIZE = (H, W) (empty: keep the stored size).
    "INPUT.DENSE.SIZE": Key([], list_of(integer(1), lengths=(0, 2))),
    # In training each image is also zoomed by a factor drawn from RANDOM_SCALE (all >= 1) and
    # cropped back (depth divided, disparity multiplied by the factor).
    "INPUT.DENSE.RANDOM_SCALE": Key([1.0], list_of(number(1), nonempty=True)),
})


def _nearest_indices(n_in, n_out):
    """Source index of each output pixel when resizing ``n_in`` pixels to ``n_out`` (the source
    pixel whose area holds the output pixel's centre)."""
    return np.minimum(((np.arange(n_out) + 0.5) * n_in / n_out).astype(np.int64), n_in - 1)


class DenseResizeTransform(T.Transform):
    """Resize (h, w) -> (new_h, new_w): images bilinearly, targets by nearest neighbour.

    Nearest neighbour copies stored values, so a resized target never blends a valid pixel with
    an invalid one (0 depth, zero normal, ignore label) nor mixes classes.
    """

    def __init__(self, h: int, w: int, new_h: int, new_w: int):
        super().__init__()
        self._set_attributes(locals())

    def apply_image(self, img: np.ndarray) -> np.ndarray:
        """Bilinear (antialiased when shrinking) resize of a float (H, W, C) image."""
        x = torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32)).permute(2, 0, 1)
        x = F.interpolate(x[None], size=(self.new_h, self.new_w), mode="bilinear",
                          align_corners=False, antialias=True)
        return x[0].permute(1, 2, 0).numpy()

    def apply_segmentation(self, segmentation: np.ndarray) -> np.ndarray:
        """Nearest-neighbour resize of a (H, W) or (H, W, C) target of any dtype."""
        rows = _nearest_indices(self.h, self.new_h)
        cols = _nearest_indices(self.w, self.new_w)
        return segmentation[rows][:, cols]

    def apply_coords(self, coords: np.ndarray) -> np.ndarray:
        coords[:, 0] *= self.new_w / self.w
        coords[:, 1] *= self.new_h / self.h
        return coords


class DenseDatasetMapper:
    """Turn a dense dataset dict (see ``sta_d2.data.datasets.dense``) into model inputs.

    Output: ``"image"`` float32 (3, H, W) 0..255 in ``image_format`` (cfg.INPUT.FORMAT, "RGB"
    or "BGR", the channel order the backbone's weights expect); per task the dataset labels as
    the task's descriptor makes them (:meth:`DenseTask.to_tensor`): ``"sem_seg"`` int64 (H, W)
    (255 = ignore), ``"depth"`` float32 (1, H, W) metres, ``"normal"`` float32 (3, H, W) unit
    vectors, ``"disparity"`` float32 (1, H, W) in pixels of the returned image (0 / all-zero =
    invalid); ``"height"``, ``"width"`` (of these tensors), ``"image_id"``, ``"file_name"`` and
    ``"dataset_index"`` when the dict has them.

    Geometry: everything is resized to ``size`` (H, W) (None: the stored size). In training an
    image is first zoomed by a factor s drawn from ``scales`` (all >= 1) and cropped back to the
    size at a random position, then flipped with probability 1/2 when ``flip`` is "horizontal"
    (or "vertical"). Images are resized bilinearly; each target follows as its descriptor says
    (:meth:`DenseTask.transform`): by nearest neighbour (see :class:`DenseResizeTransform`),
    with depth divided by s (the scene looks s times closer), disparity multiplied by the
    horizontal resize factor (s, times the width ratio of the resize to ``size``) and the
    normals' x component negated by a horizontal flip (y by a vertical one).
    Random draws use ``np.random`` as detectron2's augmentations do; the training loader seeds
    them per image (``sta_d2.data.train_loader.SeededMapping``), so a mapped image depends only on
    the seed and its stream position. At test time: resize to ``size`` only.
    """

    #: dataset-dict fields copied to the model input unchanged
    CARRIED_KEYS = ("image_id", "file_name", DATASET_INDEX_KEY)

    @configurable
    def __init__(self, is_train: bool = True, *, size=None, scales=(1.0,), flip="none",
                 image_format="RGB"):
        if image_format not in ("RGB", "BGR"):
            raise STAConfigError(f"cfg.INPUT.FORMAT = {image_format!r}: dense data is 'RGB' or 'BGR'")
        if flip not in ("horizontal", "vertical", "none"):
            raise STAConfigError(f"cfg.INPUT.RANDOM_FLIP = {flip!r}: must be 'horizontal', "
                                 "'vertical' or 'none'")
        self.is_train = is_train
        self.size = tuple(size or ()) or None
        self.scales = tuple(float(s) for s in scales)
        self.flip = flip
        self.image_format = image_format
        self._random_flip = None if flip == "none" else T.RandomFlip(
            horizontal=flip == "horizontal", vertical=flip == "vertical")

    @classmethod
    def from_config(cls, cfg, is_train: bool = True):
        return {
            "is_train": is_train,
            "size": cfg.INPUT.DENSE.SIZE,
            "scales": cfg.INPUT.DENSE.RANDOM_SCALE,
            "flip": cfg.INPUT.RANDOM_FLIP,
            "image_format": cfg.INPUT.FORMAT,
        }

    def get_transform(self, h, w):
        """The geometric transform of an (h, w) image and the zoom factor it applies."""
        out_h, out_w = self.size or (h, w)
        zoom = float(np.random.choice(self.scales)) if self.is_train else 1.0
        new_h, new_w = round(out_h * zoom), round(out_w * zoom)
        transforms = [DenseResizeTransform(h, w, new_h, new_w)] if (new_h, new_w) != (h, w) else []
        if (new_h, new_w) != (out_h, out_w):
            y0, x0 = np.random.randint(new_h - out_h + 1), np.random.randint(new_w - out_w + 1)
            transforms.append(T.CropTransform(x0, y0, out_w, out_h, new_w, new_h))
        if self.is_train and self._random_flip is not None:
            transforms.append(self._random_flip.get_transform(np.empty((out_h, out_w, 0))))
        return T.TransformList(transforms), zoom

    def __call__(self, dataset_dict):
        sample = read_dense_sample(dataset_dict)
        image = sample.pop("image")
        h, w = image.shape[:2]
        transform, zoom = self.get_transform(h, w)
        image = transform.apply_image(image)
        if self.image_format == "BGR":
            image = image[:, :, ::-1]
        out_h, out_w = image.shape[:2]
        out = {
            **{k: dataset_dict[k] for k in self.CARRIED_KEYS if k in dataset_dict},
            "height": out_h,
            "width": out_w,
            "image": torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))),
        }
        flips = {type(t) for t in transform.transforms}
        geometry = Geometry(transform, zoom, out_w * zoom / w, horizontal_flip=T.HFlipTransform in flips,
                            vertical_flip=T.VFlipTransform in flips)
        for name, target in sample.items():
            task = build_dense_task(name)
            out[name] = task.to_tensor(task.transform(target, geometry))
        return out
