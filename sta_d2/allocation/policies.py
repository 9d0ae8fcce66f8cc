"""Allocation policies: per optimizer step, which batch is used and which tasks each image gets.

A policy pulls batches from a callable (so ``ista`` and ``gap`` can hold a batch and revisit it)
and owns one seeded ``torch.Generator``. Its ``state_dict`` holds only tensors and ints, so it
loads with ``torch.load(weights_only=True)``, and restoring it makes a resumed run draw exactly
what the uninterrupted run would.
"""
import math
from typing import Callable, Dict, List, Sequence, Tuple, Type

import numpy as np
import torch
from ..config import STAConfigError
from .assignment import TaskAssignment

# Allocation policies by the name cfg.STA.POLICY uses.
POLICIES: Dict[str, Type["AllocationPolicy"]] = {}


def register_policy(name: str):
    """Class decorator: make a policy selectable as ``cfg.STA.POLICY = name``."""

    def deco(cls):
        if name in POLICIES:
            raise KeyError(f"allocation policy {name!r} is already registered")
        POLICIES[name] = cls
        return cls

    return deco

Batch = List[dict]
# (batch) -> bool (num_images, num_tasks): which tasks each image has labels for.
Availability = Callable[[Batch], torch.Tensor]


def fully_labelled(tasks: Sequence[str]) -> Availability:
    return lambda batch: torch.ones(len(batch), len(tasks), dtype=torch.bool)


def allocation_generator(seed: int, rank: int) -> torch.Generator:
    """The allocation generator of one process: distinct and reproducible per (seed, rank)."""
    mixed = np.random.SeedSequence([seed, rank]).generate_state(1, np.uint64)[0]
    return torch.Generator().manual_seed(int(mixed))


def can_cover(available: torch.Tensor, k: int) -> bool:
    """Whether some allocation of at most ``k`` tasks per image gives every task that any image
    has at least one image: a matching of tasks to image slots (augmenting paths)."""
    owners: Dict[int, List[int]] = {}  # image -> tasks placed on it

    def place(task, visited):
        for image in available[:, task].nonzero().flatten().tolist():
            if image in visited:
                continue
            visited.add(image)
            placed = owners.setdefault(image, [])
            if len(placed) < k:
                placed.append(task)
                return True
            for j, other in enumerate(placed):
                if place(other, visited):
                    placed[j] = task
                    return True
        return False

    return all(place(t, set()) for t in range(available.shape[1]) if available[:, t].any())


def draw_tasks(available: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """For each row, pick min(k, #available) of its available tasks uniformly at random."""
    scores = torch.rand(available.shape, generator=generator)
    scores[~available] = 2.0  # never ranked before an available task
    chosen = scores.argsort(dim=1)[:, :k]
    mask = torch.zeros_like(available).scatter_(1, chosen, True)
    return mask & available


class AllocationPolicy:
    """Base class. Subclasses implement :meth:`next_step`."""

    #: optimizer steps taken on each batch
    steps_per_batch = 1

    def __init__(self, tasks: Sequence[str], tasks_per_image: int, generator: torch.Generator):
        if not 1 <= tasks_per_image <= len(tasks):
            raise ValueError(f"tasks_per_image={tasks_per_image} must be in [1, {len(tasks)}]")
        self.tasks = tuple(tasks)
        self.k = tasks_per_image
        self.generator = generator

    @classmethod
    def from_config(cls, cfg, tasks: Sequence[str], generator: torch.Generator) -> "AllocationPolicy":
        return cls(tasks, cfg.STA.TASKS_PER_IMAGE, generator)

    def next_step(self, next_batch: Callable[[], Batch], availability: Availability = None
                  ) -> Tuple[Batch, TaskAssignment]:
        """The batch of the next optimizer step and its allocation. ``availability`` tells which
        tasks each image has labels for (default: all); only those are ever allocated."""
        raise NotImplementedError

    def holds_batches(self) -> bool:
        """Whether batches loaded earlier will be used again (a resumed run must reload them)."""
        return False

    def _availability(self, batch: Batch, availability: Availability) -> torch.Tensor:
        """A fresh copy, which the interleaved policies consume in place."""
        return (availability or fully_labelled(self.tasks))(batch).clone()

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])


@register_policy("full")
class FullTaskPolicy(AllocationPolicy):
    """Every task on every image (FT): stock multi-task training."""

    def next_step(self, next_batch, availability=None):
        batch = next_batch()
        return batch, TaskAssignment(self.tasks, self._availability(batch, availability))


@register_policy("sta")
class StochasticPolicy(AllocationPolicy):
    """STA: each image gets ``k`` tasks drawn uniformly, afresh at every step.

    With ``cover_all_tasks``, the draw is repeated until every task has at least one image,
    whenever the batch allows it (fully labelled: num_images * k >= num_tasks; partially
    labelled: every task some image has can get one, see :func:`can_cover`). An image with fewer
    than ``k`` labelled tasks gets all of them.
    """

    def __init__(self, tasks, tasks_per_image, generator, cover_all_tasks: bool = True):
        super().__init__(tasks, tasks_per_image, generator)
        self.cover_all_tasks = cover_all_tasks

    @classmethod
    def from_config(cls, cfg, tasks, generator):
        return cls(tasks, cfg.STA.TASKS_PER_IMAGE, generator, cfg.STA.COVER_ALL_TASKS)

    def next_step(self, next_batch, availability=None):
        batch = next_batch()
        available = self._availability(batch, availability)
        mask = draw_tasks(available, self.k, self.generator)
        if self.cover_all_tasks and can_cover(available, self.k):
            while not torch.equal(mask.any(dim=0), available.any(dim=0)):
                mask = draw_tasks(available, self.k, self.generator)
        return batch, TaskAssignment(self.tasks, mask)


@register_policy("gap")
class InterleavedPolicy(AllocationPolicy):
    """ISTA and STA-Gap: each batch is visited ceil(T / k) times, ``gap`` steps apart.

    Batches are taken ``gap`` at a time. Every image starts with all its labelled tasks left; at
    each visit it draws ``k`` of the tasks it has left, so after the last visit every image has
    used each of its tasks exactly once. The number of visits is ceil(T / k) whatever the labels,
    so every process takes the same number of steps. With ``gap == 1`` this is ISTA:
    consecutive steps on the same batch.
    """

    def __init__(self, tasks, tasks_per_image, generator, gap: int = 1):
        super().__init__(tasks, tasks_per_image, generator)
        if gap < 1:
            raise ValueError(f"gap={gap} must be >= 1")
        self.gap = gap
        self.steps_per_batch = math.ceil(len(self.tasks) / self.k)
        self._position = 0  # step within the current group of `gap` batches
        self._remaining: List[torch.Tensor] = []  # per held batch: (num_images, T) tasks left
        self._batches: List[Batch] = []

    @classmethod
    def from_config(cls, cfg, tasks, generator):
        return cls(tasks, cfg.STA.TASKS_PER_IMAGE, generator, cfg.STA.GAP)

    def next_step(self, next_batch, availability=None):
        if self._position == 0:
            self._batches = [next_batch() for _ in range(self.gap)]
            self._remaining = [self._availability(b, availability) for b in self._batches]
        while len(self._batches) < self.gap:
            # Resumed inside a group: the held batches are not in the checkpoint; the trainer's
            # loader reads them again (it restarts at the group's first batch).
            j = len(self._batches)
            self._batches.append(self._matching_batch(next_batch, j))
            self._remaining[j] &= self._availability(self._batches[j], availability)
        j = self._position % self.gap
        mask = draw_tasks(self._remaining[j], self.k, self.generator)
        self._remaining[j] &= ~mask
        self._position = (self._position + 1) % (self.gap * self.steps_per_batch)
        return self._batches[j], TaskAssignment(self.tasks, mask)

    def holds_batches(self):
        return self._position != 0

    def _matching_batch(self, next_batch, j):
        batch = next_batch()
        if len(batch) != self._remaining[j].shape[0]:
            raise RuntimeError(
                f"resumed inside an allocation cycle with batch size {len(batch)}, but the "
                f"checkpoint was taken with batch size {self._remaining[j].shape[0]}"
            )
        return batch

    def state_dict(self):
        return {
            **super().state_dict(),
            "position": self._position,
            "remaining": [r.clone() for r in self._remaining],
        }

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self._position = int(state["position"])
        self._remaining = [r.clone() for r in state["remaining"]] if self._position else []
        self._batches = []


@register_policy("ista")
class ISTAPolicy(InterleavedPolicy):
    """ISTA: the interleaved policy with the batch revisited at the very next step."""

    def __init__(self, tasks, tasks_per_image, generator):
        super().__init__(tasks, tasks_per_image, generator, gap=1)

    @classmethod
    def from_config(cls, cfg, tasks, generator):
        return cls(tasks, cfg.STA.TASKS_PER_IMAGE, generator)


def build_allocation_policy(cfg, tasks: Sequence[str], rank: int) -> AllocationPolicy:
    """The policy named by ``cfg.STA.POLICY`` over ``tasks``, seeded by (cfg.STA.SEED, rank)."""
    if cfg.STA.TASKS_PER_IMAGE > len(tasks):
        raise STAConfigError(
            f"cfg.STA.TASKS_PER_IMAGE = {cfg.STA.TASKS_PER_IMAGE}: exceeds the number of tasks of "
            f"the model ({len(tasks)}: {', '.join(tasks)})"
        )
    policy_cls = POLICIES[cfg.STA.POLICY]
    return policy_cls.from_config(cfg, tasks, allocation_generator(cfg.STA.SEED, rank))
