"""The inner training loop: one optimizer step per allocation step."""
import time
from typing import Dict

import numpy as np
import torch
from detectron2.engine import SimpleTrainer
from detectron2.utils import comm
from detectron2.utils.env import seed_all_rng
from detectron2.utils.events import get_event_storage
from torch.nn.parallel import DistributedDataParallel

from ..allocation import AllocationPolicy, TaskAssignment
from ..comm import all_average
from ..data import DATASET_INDEX_KEY
from ..data.train_loader import StreamBatchSampler, mixed_seed
from ..weighting import TaskWeighting, WeightingStep


def unwrap_model(model):
    return model.module if isinstance(model, DistributedDataParallel) else model


class AllocationTrainer(SimpleTrainer):
    """detectron2's SimpleTrainer where an :class:`AllocationPolicy` chooses, at every step, the
    batch (new, or held for another ISTA/gap visit) and the tasks of each of its images.

    Each call of :meth:`run_step` is one optimizer step, so ``SOLVER.MAX_ITER`` and every
    iteration-based period count optimizer steps; ``ista`` and ``gap`` load a new batch once every
    ``policy.steps_per_batch`` steps. The task losses become gradients through ``weighting``
    (``cfg.STA.WEIGHTING``). Besides detectron2's losses it logs, per task, ``task_loss/<task>``,
    ``task_weight/<task>`` and ``allocated/<task>`` (images allocated, summed over processes),
    and ``skipped_images``: images dropped from their batch for having no labelled task.
    Allocation only gives an image tasks it has labels for (``model.task_availability``).

    Resuming is exact: every step reseeds the global random streams (torch, numpy, random) from
    (``seed``, rank, iteration), and the checkpointed state holds, besides the optimizer, the
    allocation and the weighting method, the batch number at which the loader (a
    :func:`sta_d2.data.build_stream_train_loader`) restarts: the next batch, or, inside an
    ISTA/gap cycle, the first held batch, which the policy then reads again.
    """

    def __init__(self, model, data_loader, optimizer, policy: AllocationPolicy, weighting: TaskWeighting,
                 seed: int):
        super().__init__(model, data_loader, optimizer)
        self.policy = policy
        self.weighting = weighting
        self.seed = seed
        self._data_time = 0.0
        self._skipped = 0
        self._loaded = 0  # batches read from the loader
        self._cycle_start = 0  # self._loaded when the policy's current batches began

    def _next_batch(self):
        """The next batch without its images that have no label for any task (counted)."""
        start = time.perf_counter()
        batch = []
        while not batch:
            loaded = next(self._data_loader_iter)
            self._loaded += 1
            labelled = unwrap_model(self.model).task_availability(loaded).any(dim=1).tolist()
            self._skipped += labelled.count(False)
            batch = [x for x, keep in zip(loaded, labelled) if keep]
        self._data_time += time.perf_counter() - start
        return batch

    def run_step(self):
        assert self.model.training, "[AllocationTrainer] model was changed to eval mode!"
        self._data_time, self._skipped = 0.0, 0
        seed_all_rng(mixed_seed(self.seed, comm.get_rank(), self.iter))
        if not self.policy.holds_batches():
            self._cycle_start = self._loaded
        model = unwrap_model(self.model)
        batch, assignment = self.policy.next_step(self._next_batch, model.task_availability)
        inputs = assignment.attach(batch)
        loss_dict = self.model(inputs)
        task_losses = model.task_losses(loss_dict)
        self.check_finite(task_losses, loss_dict)
        step = WeightingStep(model=model, active=self.active_tasks(assignment), iteration=self.iter,
                             dataset_indices=[x.get(DATASET_INDEX_KEY) for x in inputs])
        self.optimizer.zero_grad()
        weights = self.weighting.backward(task_losses, step)
        self.weighting.average_gradients()
        self._write_metrics(loss_dict, self._data_time)
        self.write_task_metrics(task_losses, weights, assignment, self._skipped)
        self.optimizer.step()

    def check_finite(self, task_losses, loss_dict):
        """Stop with detectron2's FloatingPointError, naming the task(s), before a non-finite loss
        reaches the parameters (so the last checkpoint stays the last good state). Every process
        learns of a non-finite loss on any process and stops with the same message."""
        bad = torch.tensor([float(not torch.isfinite(v).all()) for v in task_losses.values()], dtype=torch.float64)
        bad = all_average(bad.to(next(iter(task_losses.values())).device))
        if bad.any():
            tasks = [t for t, b in zip(task_losses, bad.tolist()) if b]
            raise FloatingPointError(
                f"Loss became infinite or NaN at iteration={self.iter} in task(s) {tasks} (on some "
                f"process); this process's losses: { {k: float(v.detach()) for k, v in loss_dict.items()} }"
            )

    @staticmethod
    def active_tasks(assignment: TaskAssignment):
        """Tasks allocated to some image of this step on any process: every process hands the
        weighting method the same tasks, so its cross-process reductions line up (a task absent
        from one process's sub-batch has an exact zero loss there)."""
        counts = all_average(assignment.mask.sum(dim=0).to(torch.float64))
        return [t for t, c in zip(assignment.tasks, counts.tolist()) if c > 0]

    @staticmethod
    def write_task_metrics(task_losses: Dict[str, torch.Tensor], weights: Dict[str, float],
                           assignment: TaskAssignment, skipped: int):
        """Log per-task losses and weights (mean over processes), allocation counts and images
        skipped for having no labelled task (sums over processes)."""
        local = {
            "losses": {t: v.detach().cpu().item() for t, v in task_losses.items()},
            "weights": weights,
            "counts": assignment.counts(),
            "skipped": skipped,
        }
        gathered = comm.gather(local)
        if comm.is_main_process():
            storage = get_event_storage()
            storage.put_scalar("skipped_images", sum(g["skipped"] for g in gathered), smoothing_hint=False)
            for task in task_losses:
                storage.put_scalar(f"task_loss/{task}", np.mean([g["losses"][task] for g in gathered]))
                storage.put_scalar(f"task_weight/{task}", np.mean([g["weights"][task] for g in gathered]))
                storage.put_scalar(f"allocated/{task}", sum(g["counts"][task] for g in gathered), smoothing_hint=False)

    def state_dict(self):
        next_batch = self._cycle_start if self.policy.holds_batches() else self._loaded
        return {**super().state_dict(), "allocation": self.policy.state_dict(),
                "weighting": self.weighting.state_dict(), "data": {"seed": self.seed, "next_batch": next_batch}}

    def load_state_dict(self, state_dict):
        super().load_state_dict(state_dict)
        self.policy.load_state_dict(state_dict["allocation"])
        self.weighting.load_state_dict(state_dict["weighting"])
        self.seed = int(state_dict["data"]["seed"])
        self._loaded = self._cycle_start = int(state_dict["data"]["next_batch"])
        sampler = getattr(self.data_loader, "batch_sampler", None)
        if not isinstance(sampler, StreamBatchSampler):
            raise TypeError("resuming needs the loader of sta_d2.data.build_stream_train_loader to read "
                            f"the same batches again; build_train_loader returned {type(self.data_loader).__name__}")
        sampler.start_at(self._loaded, self.seed)
        self._data_loader_iter = iter(self.data_loader)
