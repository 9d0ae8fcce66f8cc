"""The allocation policy interface, its registry and its config keys.

A policy decides, per optimizer step, which batch is used and which tasks each image gets. It
pulls batches from a callable (so a policy can hold a batch and revisit it) and owns one seeded
``torch.Generator``. Its ``state_dict`` holds only tensors and ints, so it loads with
``torch.load(weights_only=True)``, and restoring it makes a resumed run draw exactly what the
uninterrupted run would.
"""
from typing import Callable, Dict, List, Sequence, Tuple

import numpy as np
import torch
from detectron2.utils.registry import Registry

from ..specs import SEED, ConfigKeys, Key, argument_name, integer, one_of, value_at
from .assignment import TaskAssignment

ALLOCATION_POLICY_REGISTRY = Registry("ALLOCATION_POLICY")
ALLOCATION_POLICY_REGISTRY.__doc__ = """Allocation policies; ``cfg.STA.POLICY`` names one by its
``name`` attribute. A policy's own keys are its ``CONFIG`` (dotted key -> Key)."""

Batch = List[dict]
# (batch) -> bool (num_images, num_tasks): which tasks each image has labels for.
Availability = Callable[[Batch], torch.Tensor]


def policy_names() -> List[str]:
    return sorted(cls.name for _, cls in ALLOCATION_POLICY_REGISTRY)


def get_policy(name: str):
    """The registered policy class whose ``name`` is ``name``."""
    for _, cls in ALLOCATION_POLICY_REGISTRY:
        if cls.name == name:
            return cls
    raise KeyError(f"no allocation policy named {name!r}; registered: {policy_names()}")


CONFIG_KEYS = ConfigKeys({
    # "full" (every task on every image), "sta" (each image gets TASKS_PER_IMAGE random tasks per
    # step), "ista" (the batch is revisited until every image has used every task, one optimizer
    # step per visit), "gap" (like "ista", with a batch revisited STA.GAP steps later).
    "STA.POLICY": Key("full", one_of(policy_names)),
    "STA.TASKS_PER_IMAGE": Key(1, integer(1)),
    # Seed of the allocation generator; each process uses (SEED, rank).
    "STA.SEED": Key(0, SEED),
})


def policy_config_keys() -> Dict[str, Key]:
    """The keys of every registered policy's ``CONFIG``."""
    keys = {}
    for _, cls in ALLOCATION_POLICY_REGISTRY:
        keys.update(cls.CONFIG)
    return keys


def fully_labelled(tasks: Sequence[str]) -> Availability:
    return lambda batch: torch.ones(len(batch), len(tasks), dtype=torch.bool)


def allocation_generator(seed: int, rank: int) -> torch.Generator:
    """The allocation generator of one process: distinct and reproducible per (seed, rank)."""
    mixed = np.random.SeedSequence([seed, rank]).generate_state(1, np.uint64)[0]
    return torch.Generator().manual_seed(int(mixed))


def draw_tasks(available: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """For each row, pick min(k, #available) of its available tasks uniformly at random."""
    scores = torch.rand(available.shape, generator=generator)
    scores[~available] = 2.0  # never ranked before an available task
    chosen = scores.argsort(dim=1)[:, :k]
    mask = torch.zeros_like(available).scatter_(1, chosen, True)
    return mask & available


class AllocationPolicy:
    """Base class. Subclasses implement :meth:`next_step`."""

    #: the value of ``cfg.STA.POLICY`` that selects the policy
    name = ""
    #: the policy's own config keys (dotted key -> Key), passed to ``__init__`` by argument name
    CONFIG: Dict[str, Key] = {}
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
        own = {argument_name(key): value_at(cfg, key) for key in cls.CONFIG}
        return cls(tasks, cfg.STA.TASKS_PER_IMAGE, generator, **own)

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


def build_allocation_policy(cfg, tasks: Sequence[str], rank: int) -> AllocationPolicy:
    """The policy named by ``cfg.STA.POLICY`` over ``tasks``, seeded by (cfg.STA.SEED, rank)."""
    return get_policy(cfg.STA.POLICY).from_config(cfg, tasks, allocation_generator(cfg.STA.SEED, rank))
