"""Which tasks each image of a batch is trained on at one optimizer step."""
from typing import Dict, List, Sequence

import torch

# Key of a dataset dict (a model input) that holds the tasks allocated to that image.
TASKS_KEY = "sta_tasks"


class TaskAssignment:
    """A boolean (num_images, num_tasks) matrix over named tasks.

    It travels with the batch: :meth:`attach` writes each image's task names into its input dict
    under ``TASKS_KEY``, and :meth:`from_inputs` reads them back inside the model, so the
    allocation reaches the heads without changing detectron2's model call signature.
    """

    def __init__(self, tasks: Sequence[str], mask: torch.Tensor):
        mask = torch.as_tensor(mask, dtype=torch.bool)
        if mask.dim() != 2 or mask.shape[1] != len(tasks):
            raise ValueError(f"mask of shape {tuple(mask.shape)} does not match tasks {list(tasks)}")
        self.tasks = tuple(tasks)
        self.mask = mask

    @classmethod
    def from_inputs(cls, batched_inputs: List[dict], tasks: Sequence[str]) -> "TaskAssignment":
        """Read the allocation from model inputs; an input without ``TASKS_KEY`` has every task."""
        rows = []
        for i, x in enumerate(batched_inputs):
            allocated = x.get(TASKS_KEY, tasks)
            unknown = set(allocated) - set(tasks)
            if unknown:
                raise ValueError(
                    f"input {i} is allocated unknown task(s) {sorted(unknown)}; the model's tasks "
                    f"are {list(tasks)}"
                )
            rows.append([t in allocated for t in tasks])
        return cls(tasks, torch.tensor(rows, dtype=torch.bool).reshape(len(rows), len(tasks)))

    @property
    def num_images(self) -> int:
        return self.mask.shape[0]

    def images(self, task: str) -> List[int]:
        """Indices of the images allocated ``task``, in batch order."""
        return self.mask[:, self.tasks.index(task)].nonzero().flatten().tolist()

    def covers_all(self, task: str) -> bool:
        return bool(self.mask[:, self.tasks.index(task)].all())

    def counts(self) -> Dict[str, int]:
        """Number of images allocated each task."""
        return {t: int(n) for t, n in zip(self.tasks, self.mask.sum(dim=0).tolist())}

    def attach(self, batch: List[dict]) -> List[dict]:
        """Shallow copies of the batch's dicts, each carrying its image's allocated task names."""
        if len(batch) != self.num_images:
            raise ValueError(f"assignment for {self.num_images} images given a batch of {len(batch)}")
        return [
            {**d, TASKS_KEY: tuple(t for t, on in zip(self.tasks, row) if on)}
            for d, row in zip(batch, self.mask.tolist())
        ]

    def __repr__(self):
        return f"TaskAssignment(tasks={self.tasks}, counts={self.counts()})"
