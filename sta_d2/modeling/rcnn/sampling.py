"""Per-task random streams, so that each task's anchors and proposals are sampled as stock
detectron2 samples them on that task's sub-batch."""
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Callable, Dict, List, Optional, Sequence, Tuple, TypeVar

import torch

from ..allocation_scope import allocated_images

T = TypeVar("T")


def _rng_state(device: torch.device) -> Tuple[torch.Tensor, ...]:
    if device.type == "cuda":
        return torch.get_rng_state(), torch.cuda.get_rng_state(device)
    return (torch.get_rng_state(),)


def _set_rng_state(device: torch.device, state: Tuple[torch.Tensor, ...]) -> None:
    torch.set_rng_state(state[0])
    if device.type == "cuda":
        torch.cuda.set_rng_state(state[1], device)


class TaskStreams:
    """The random streams of the sampling tasks in one training forward.

    Stock detectron2 run on the sub-batch of a task draws, from the random state at the start of
    its forward, the RPN's anchor samples and then the ROI heads' proposal samples, image by image
    (``subsample_labels``). Here each distinct sub-batch of the given tasks is a stream with its
    own random state, starting from the state at the start of the forward: a sampler runs once per
    stream, on the stream's images, from the state where the stream's previous sampler left it.
    Tasks allocated the same images share a stream, so with every task allocated there is a
    single stream and sampling is stock's. torch's random state is left where the last stream
    left it.
    """

    def __init__(self, tasks: Sequence[str], num_images: int, device: torch.device):
        self.tasks = list(tasks)
        self.groups: Dict[Tuple[int, ...], List[str]] = {}
        for task in self.tasks:
            images = allocated_images(task)
            images = tuple(range(num_images) if images is None else images)
            if images:
                self.groups.setdefault(images, []).append(task)
        self.num_images = num_images
        self._device = device
        start = _rng_state(device)
        self._states = {images: start for images in self.groups}

    @property
    def stock(self) -> bool:
        """Whether every task is allocated every image: one stream, stock detectron2's."""
        return self.groups == {tuple(range(self.num_images)): self.tasks}

    def sample(self, sampler: Callable[[List[int]], T]) -> List[Tuple[List[str], List[int], T]]:
        """``sampler(images)`` of each stream, run from the stream's random state: (tasks, images,
        result) per stream, in the order of the streams' first tasks. A task allocated no image
        has no stream."""
        out = []
        for images, tasks in self.groups.items():
            _set_rng_state(self._device, self._states[images])
            out.append((tasks, list(images), sampler(list(images))))
            self._states[images] = _rng_state(self._device)
        return out


_STREAMS: ContextVar[Optional[TaskStreams]] = ContextVar("sta_d2_task_streams", default=None)


@contextmanager
def task_streams(tasks: Sequence[str], num_images: int, device: torch.device):
    """Give the samplers of the forward run inside (and inside an allocation scope) one random
    stream per sub-batch of ``tasks``."""
    token = _STREAMS.set(TaskStreams(tasks, num_images, device))
    try:
        yield
    finally:
        _STREAMS.reset(token)


def current_streams() -> Optional[TaskStreams]:
    """The streams of the current training forward; None outside one."""
    return _STREAMS.get()
