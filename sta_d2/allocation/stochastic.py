"""STA: a random subset of tasks per image, afresh at every step."""
from typing import Dict, List

import torch

from ..specs import Key, boolean
from .assignment import TaskAssignment
from .policy import ALLOCATION_POLICY_REGISTRY, AllocationPolicy, draw_tasks


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


@ALLOCATION_POLICY_REGISTRY.register()
class StochasticPolicy(AllocationPolicy):
    """STA: each image gets ``k`` tasks drawn uniformly, afresh at every step.

    With ``cover_all_tasks``, the draw is repeated until every task has at least one image,
    whenever the batch allows it (fully labelled: num_images * k >= num_tasks; partially
    labelled: every task some image has can get one, see :func:`can_cover`). An image with fewer
    than ``k`` labelled tasks gets all of them.
    """

    name = "sta"
    # Redraw until every task has at least one image in the batch (when the batch allows it).
    CONFIG = {"STA.COVER_ALL_TASKS": Key(True, boolean())}

    def __init__(self, tasks, tasks_per_image, generator, cover_all_tasks: bool = True):
        super().__init__(tasks, tasks_per_image, generator)
        self.cover_all_tasks = cover_all_tasks

    def next_step(self, next_batch, availability=None):
        batch = next_batch()
        available = self._availability(batch, availability)
        mask = draw_tasks(available, self.k, self.generator)
        if self.cover_all_tasks and can_cover(available, self.k):
            while not torch.equal(mask.any(dim=0), available.any(dim=0)):
                mask = draw_tasks(available, self.k, self.generator)
        return batch, TaskAssignment(self.tasks, mask)
