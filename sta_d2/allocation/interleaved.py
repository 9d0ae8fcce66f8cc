"""ISTA and STA-Gap: a batch revisited until every image has used each of its tasks once."""
import math
from typing import List

import torch

from ..specs import Key, integer
from .assignment import TaskAssignment
from .policy import ALLOCATION_POLICY_REGISTRY, AllocationPolicy, Batch, draw_tasks


@ALLOCATION_POLICY_REGISTRY.register()
class InterleavedPolicy(AllocationPolicy):
    """ISTA and STA-Gap: each batch is visited ceil(T / k) times, ``gap`` steps apart.

    Batches are taken ``gap`` at a time. Every image starts with all its labelled tasks left; at
    each visit it draws ``k`` of the tasks it has left, so after the last visit every image has
    used each of its tasks exactly once. The number of visits is ceil(T / k) whatever the labels,
    so every process takes the same number of steps. With ``gap == 1`` this is ISTA:
    consecutive steps on the same batch.
    """

    name = "gap"
    # Number of steps between two visits of a batch (1 is "ista").
    CONFIG = {"STA.GAP": Key(2, integer(1))}

    def __init__(self, tasks, tasks_per_image, generator, gap: int = 1):
        super().__init__(tasks, tasks_per_image, generator)
        if gap < 1:
            raise ValueError(f"gap={gap} must be >= 1")
        self.gap = gap
        self.steps_per_batch = math.ceil(len(self.tasks) / self.k)
        self._position = 0  # step within the current group of `gap` batches
        self._remaining: List[torch.Tensor] = []  # per held batch: (num_images, T) tasks left
        self._batches: List[Batch] = []

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


@ALLOCATION_POLICY_REGISTRY.register()
class ISTAPolicy(InterleavedPolicy):
    """ISTA: the interleaved policy with the batch revisited at the very next step."""

    name = "ista"
    CONFIG = {}

    def __init__(self, tasks, tasks_per_image, generator):
        super().__init__(tasks, tasks_per_image, generator, gap=1)
