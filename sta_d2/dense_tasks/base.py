"""The dense task descriptor, its registry and what several tasks share.

A :class:`DenseTask` is everything sta_d2 knows of one per-pixel task, from its target files to
its report columns; the data mapper, the dense model, the evaluator and the report ask it rather
than knowing tasks themselves. A target takes three forms:

- decoded: a numpy (H, W) or (H, W, C) array, as a reader returns it and the augmentation moves
  it; an invalid pixel holds the task's ``invalid_value``;
- per image: the tensor of a model input (:meth:`DenseTask.to_tensor`), by default float (C, H, W);
- batched: the per-image tensors stacked (padded with ``invalid_value``), (N, ...).
"""
from dataclasses import dataclass
from typing import Any, Dict, List, Tuple

import numpy as np
import torch
from detectron2.utils.registry import Registry

DENSE_TASK_REGISTRY = Registry("DENSE_TASK")
DENSE_TASK_REGISTRY.__doc__ = """Dense task descriptors (subclasses of DenseTask), looked up by their
``name`` attribute (:func:`get_dense_task`)."""

DATA_HINT = "see datasets/README.md for the dense layouts"


def dense_task_names() -> List[str]:
    """The names of the registered dense tasks, in registration order."""
    return [cls.name for _, cls in DENSE_TASK_REGISTRY]


def get_dense_task(name: str) -> type:
    """The registered :class:`DenseTask` subclass whose ``name`` is ``name``."""
    for _, cls in DENSE_TASK_REGISTRY:
        if cls.name == name:
            return cls
    raise KeyError(f"no dense task named {name!r}; registered: {dense_task_names()}")


def build_dense_task(name: str, **context) -> "DenseTask":
    """The descriptor of task ``name``, given what its user knows as keyword arguments (among
    ``num_classes``, ``class_names``, ``ignore_value``): the task's constructor gets those its
    ``CONTEXT`` names, so one call serves every task."""
    cls = get_dense_task(name)
    return cls(**{key: value for key, value in context.items() if key in cls.CONTEXT})


def fail_file(path, why):
    """Raise ValueError naming the file ``path`` and what is wrong with what it holds."""
    raise ValueError(f"{path}: {why}; {DATA_HINT}")


def load_npy(path) -> np.ndarray:
    """The array of a ``.npy`` file; a file numpy cannot read raises naming it."""
    try:
        return np.load(path)
    except FileNotFoundError:
        raise
    except (OSError, ValueError) as e:
        fail_file(path, f"not a readable .npy file ({e})")


def masked_mean(values: torch.Tensor, valid: torch.Tensor, prediction: torch.Tensor,
                per_image: bool) -> torch.Tensor:
    """Mean of ``values`` (N, H, W) over the ``valid`` pixels: a scalar, or (N,) if ``per_image``.
    Where no pixel is valid it is an exact zero connected to ``prediction``'s graph (never NaN),
    so an image with only invalid pixels, or a batch without labels, is safe."""
    if per_image:
        counts = valid.flatten(1).sum(dim=1)
        sums = (values * valid).flatten(1).sum(dim=1)
        return torch.where(counts > 0, sums / counts.clamp_min(1), prediction.sum() * 0.0)
    # no test of the count on the host: with no valid pixel, the empty sum (still in the graph) / 1
    return values[valid].sum() / valid.sum().clamp_min(1)


def divide(a, b) -> float:
    """``a / b`` as a float; NaN when ``b`` is 0 (a metric over no pixel)."""
    return float(a) / float(b) if b else float("nan")


@dataclass(frozen=True)
class Geometry:
    """How the data mapper moved an image's pixels, for its targets to follow: ``transform``
    (detectron2 transforms: resize, crop, flip), the random ``zoom`` s (the scene looks s times
    closer), ``x_scale`` the horizontal resize factor from the stored image to the returned one,
    and the flips applied."""

    transform: Any
    zoom: float = 1.0
    x_scale: float = 1.0
    horizontal_flip: bool = False
    vertical_flip: bool = False


class DenseTask:
    """Base class of the dense task descriptors. A subclass sets the class attributes below and
    implements :meth:`decode`, :meth:`valid`, :meth:`pixel_losses`, :meth:`image_sums`,
    :meth:`new_sums` and :meth:`metrics`; the other methods have defaults for a float map.

    A task that needs what only its user knows (sem_seg: the classes, the ignored label) takes it
    as constructor arguments named in ``CONTEXT``, each with a default: the data pipeline builds
    descriptors without any (see :func:`build_dense_task`).
    """

    #: the task's key in model inputs and outputs, ``cfg.MODEL.DENSE.TASKS``, dataset dicts
    #: (``"<name>_file_name"``) and results (``"<name>/<metric>"``)
    name = ""
    #: the constructor's keyword arguments that come from its user's context
    CONTEXT: Tuple[str, ...] = ()
    #: metric -> whether lower is better, in report order
    METRICS: Dict[str, bool] = {}
    #: the metrics a results table shows by default
    REPORT_COLUMNS: Tuple[str, ...] = ()
    #: channels of the head's output
    channels = 1
    #: the value of an invalid pixel of a target, which also pads batched targets
    invalid_value = 0

    # ------------------------------------------------------------------ data
    def decode(self, values: np.ndarray, path: str) -> np.ndarray:
        """The decoded target of the array a reader loaded from ``path``: checked (an error names
        the file, see :func:`fail_file`), its invalid pixels set to ``invalid_value``."""
        raise NotImplementedError

    def read(self, path: str) -> np.ndarray:
        """The task's default reader: the decoded target of a ``.npy`` file. Dataset formats with
        other files give their own readers (``sta_d2.data.datasets.dense.DENSE_FORMATS``)."""
        return self.decode(load_npy(path), path)

    def transform(self, target: np.ndarray, geometry: Geometry) -> np.ndarray:
        """The decoded target moved with its image: by default each pixel copied from where the
        transform takes it (nearest neighbour, so a valid pixel never blends with an invalid one)."""
        return np.ascontiguousarray(geometry.transform.apply_segmentation(target))

    def to_tensor(self, target: np.ndarray) -> torch.Tensor:
        """The per-image tensor of a decoded target; by default float (C, H, W)."""
        h, w = target.shape[:2]
        return torch.from_numpy(np.ascontiguousarray(target.reshape(h, w, -1).transpose(2, 0, 1)))

    # ------------------------------------------------------------------ model
    def valid(self, target: torch.Tensor) -> torch.Tensor:
        """Bool (N, H, W): the pixels of batched targets that have a label."""
        raise NotImplementedError

    def pixel_losses(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """(N, H, W) loss of each pixel of the head's output ``prediction`` (N, channels, H, W);
        only valid pixels are read."""
        raise NotImplementedError

    def loss(self, prediction: torch.Tensor, target: torch.Tensor, per_image=False) -> torch.Tensor:
        """The mean pixel loss over the valid pixels of the batch (of each image if ``per_image``),
        an exact connected zero where none is valid."""
        return masked_mean(self.pixel_losses(prediction, target), self.valid(target), prediction, per_image)

    def prediction(self, output: torch.Tensor) -> torch.Tensor:
        """The head's output (N, channels, H, W) in label space; by default as it is."""
        return output

    def inference_output(self, output: torch.Tensor) -> torch.Tensor:
        """What the model returns at inference for the head's output; by default
        :meth:`prediction`."""
        return self.prediction(output)

    @property
    def joint_channels(self) -> int:
        """Channels of :meth:`joint_target` (and of :meth:`prediction`)."""
        return self.channels

    def joint_target(self, target: torch.Tensor) -> torch.Tensor:
        """Batched targets in the form of :meth:`prediction` (N, joint_channels, H, W), read
        where :meth:`valid`; by default as they are."""
        return target

    # ------------------------------------------------------------------ evaluation
    def metric_names(self) -> List[str]:
        """The metrics :meth:`metrics` reports, in order."""
        return list(self.METRICS)

    def as_label(self, prediction: torch.Tensor, where: str) -> torch.Tensor:
        """An image's prediction in the form of its ground truth, for :meth:`image_sums`; by
        default as it is. ``where`` names the image for errors."""
        return prediction

    def new_sums(self) -> Dict[str, Any]:
        """The split-level sums before any image: numbers or numpy arrays, summed key by key
        over images and processes."""
        raise NotImplementedError

    def image_sums(self, prediction: torch.Tensor, target: torch.Tensor, where: str) -> Dict[str, Any]:
        """What one image adds to the sums, from its prediction (:meth:`as_label`) and its ground
        truth of the same shape (CPU tensors)."""
        raise NotImplementedError

    def metrics(self, sums: Dict[str, Any]) -> Dict[str, float]:
        """The metrics of a split from its sums, in :meth:`metric_names` order."""
        raise NotImplementedError


class PositiveMapTask(DenseTask):
    """A one-channel map of positive values, such as depth or disparity: 0 marks an invalid pixel
    (and NaN, inf and negative values of a file). The loss is L1; ``abs_err`` = mean |p - g| and
    ``rel_err`` = mean |p - g| / g over the pixels whose ground truth g is finite and > 0."""

    METRICS = {"abs_err": True, "rel_err": True}
    REPORT_COLUMNS = ("abs_err", "rel_err")

    def decode(self, values, path):
        """A float (H, W) or (H, W, 1) map; NaN, inf and negative values become 0 (invalid)."""
        if values.ndim == 3 and values.shape[2] == 1:
            values = values[..., 0]
        if values.ndim != 2 or values.dtype.kind != "f":
            fail_file(path, f"{self.name} of dtype {values.dtype} and shape {values.shape}; expected "
                            "float (H, W) or (H, W, 1)")
        values = values.astype(np.float32)
        values[~np.isfinite(values) | (values < 0)] = 0
        return values

    def valid(self, target):
        return (torch.isfinite(target) & (target > 0)).all(dim=1)

    def pixel_losses(self, prediction, target):
        return (prediction - target.nan_to_num()).abs().squeeze(1)

    def new_sums(self):
        return dict.fromkeys(("count", "abs", "rel"), 0)

    @staticmethod
    def valid_pixels(prediction, target):
        """float64 (prediction, ground truth) at the pixels whose ground truth is finite and > 0."""
        target, prediction = target.double(), prediction.double()
        valid = torch.isfinite(target) & (target > 0)
        return prediction[valid], target[valid]

    def image_sums(self, prediction, target, where):
        prediction, target = self.valid_pixels(prediction, target)
        err = (prediction - target).abs()
        return {"count": target.numel(), "abs": err.sum().item(), "rel": (err / target).sum().item()}

    def metrics(self, sums):
        return {"abs_err": divide(sums["abs"], sums["count"]), "rel_err": divide(sums["rel"], sums["count"])}
