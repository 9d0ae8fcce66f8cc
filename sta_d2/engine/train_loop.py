"""The inner training loop: one optimizer step per allocation step."""
import logging
import math
import time
from typing import Dict, List

import numpy as np
import torch
from detectron2.engine import SimpleTrainer
from detectron2.utils import comm
from detectron2.utils.env import seed_all_rng
from detectron2.utils.events import get_event_storage
from torch.nn.parallel import DistributedDataParallel

from ..allocation import AllocationPolicy
from ..data import DATASET_INDEX_KEY
from ..data.train_loader import StreamBatchSampler, mixed_seed
from ..specs import fail
from ..weighting import TaskWeighting, WeightingStep, deferred_scalars, loss_scaling

#: the autocast dtype of mixed precision, by device type
AUTOCAST_DTYPES = {"cuda": torch.float16, "cpu": torch.bfloat16}


def check_mixed_precision(enabled: bool, key: str, device, device_key: str) -> None:
    """Fail naming the config ``key`` that turns mixed precision on when the device (the value of
    ``device_key``) is of a type it does not run on."""
    if enabled and str(device).split(":")[0] not in AUTOCAST_DTYPES:
        fail(key, True, f"mixed precision runs on {sorted(AUTOCAST_DTYPES)}, not on {device_key} = {device!r}")


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

    With ``amp`` (mixed precision), the forward runs under autocast, float16 on CUDA and bfloat16
    on the CPU, and the losses are cast to float32 after it: the weighting method runs outside
    autocast, in float32. Its backward passes are scaled by ``grad_scaler``, a GradScaler, which
    then steps the optimizer and updates the scale, as detectron2's AMPTrainer does (see
    :func:`sta_d2.weighting.gradients.loss_scaling`). The scaler is enabled with float16 only:
    bfloat16 has float32's exponent range, so its gradients neither underflow nor overflow where
    float32's would not and need no scaling; the loop is the same, the disabled scaler's scale,
    step and update being pass-throughs, as they are without ``amp``. A non-finite loss stops
    training (:meth:`check_finite`); inf/NaN gradients of finite losses, a float16 overflow, are
    the scaler's to skip: it leaves the parameters as they were and lowers the scale. The
    scaler's state is checkpointed with the rest.
    """

    def __init__(self, model, data_loader, optimizer, policy: AllocationPolicy, weighting: TaskWeighting,
                 seed: int, amp: bool = False):
        super().__init__(model, data_loader, optimizer)
        device = unwrap_model(model).device.type
        if amp and device not in AUTOCAST_DTYPES:
            raise ValueError(f"mixed precision runs on {sorted(AUTOCAST_DTYPES)}, not on device type {device!r}")
        self.device_type = device
        self.autocast_dtype = AUTOCAST_DTYPES[device] if amp else None  # None: no mixed precision
        self.grad_scaler = torch.amp.GradScaler(device, enabled=amp and device == "cuda")
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
        loss_dict = self.forward(inputs)
        task_losses = model.task_losses(loss_dict)
        counts = assignment.counts()
        step = WeightingStep(model=model, active=self.active_tasks(counts), iteration=self.iter,
                             dataset_indices=[x.get(DATASET_INDEX_KEY) for x in inputs])
        self.optimizer.zero_grad()
        scale = self.grad_scaler.scale(torch.ones((), device=model.device)) if self.grad_scaler.is_enabled() else None
        with deferred_scalars() as logged, loss_scaling(scale):
            weights = self.weighting.backward(task_losses, step)
        self.weighting.average_gradients()
        self.write_task_metrics(loss_dict, task_losses, weights, logged, counts)
        self.grad_scaler.step(self.optimizer)
        self.grad_scaler.update()

    def forward(self, inputs) -> Dict[str, torch.Tensor]:
        """The model's losses on ``inputs``; with mixed precision, from a forward under autocast,
        cast to float32."""
        if self.autocast_dtype is None:
            return self.model(inputs)
        with torch.autocast(self.device_type, dtype=self.autocast_dtype):
            loss_dict = self.model(inputs)
        return {k: v.float() for k, v in loss_dict.items()}

    def check_finite(self, gathered: List[dict]):
        """Stop with detectron2's FloatingPointError, naming the task(s), before a non-finite loss
        reaches the parameters: the optimizer has not stepped, so the last checkpoint stays the
        last good state. ``gathered``: every process's host values of the step (see
        :meth:`write_task_metrics`), so every process learns of a non-finite loss on any process
        and stops with the same message."""
        local = gathered[comm.get_rank()]
        tasks = [t for t in local["task_losses"] if any(not math.isfinite(g["task_losses"][t]) for g in gathered)]
        if tasks or any(not math.isfinite(v) for g in gathered for v in g["losses"].values()):
            raise FloatingPointError(
                f"Loss became infinite or NaN at iteration={self.iter} in task(s) {tasks} (on some "
                f"process); this process's losses: {local['losses']}"
            )

    @staticmethod
    def active_tasks(counts: Dict[str, int]) -> List[str]:
        """Tasks allocated to some image of this step on any process (``counts``: this process's
        images per task): every process hands the weighting method the same tasks, so its
        cross-process reductions line up (a task absent from one process's sub-batch has an exact
        zero loss there). Host values only."""
        gathered = comm.all_gather(counts)
        return [t for t in counts if sum(c[t] for c in gathered) > 0]

    def write_task_metrics(self, loss_dict: Dict[str, torch.Tensor], task_losses: Dict[str, torch.Tensor],
                           weights: Dict[str, object], logged: Dict[str, object], counts: Dict[str, int]):
        """Write what SimpleTrainer writes (``total_loss``, each loss, ``data_time``) and, per
        task, the loss and weight (means over processes) and the allocated images, the images
        skipped for having no labelled task (sums over processes) and what the weighting method
        logged; but first stop on a non-finite loss (:meth:`check_finite`).

        The step's tensors (losses, weights, logged values) reach the host in one transfer per
        device, and processes exchange host values only: one synchronisation with the device per
        step, where SimpleTrainer has one per loss."""
        entries = ([("losses", k, v) for k, v in loss_dict.items()]
                   + [("task_losses", t, v) for t, v in task_losses.items()]
                   + [("weights", t, w) for t, w in weights.items()] + [("logged", k, v) for k, v in logged.items()])
        values = [v for _, _, v in entries]
        by_device = {}
        for i, v in enumerate(values):
            if isinstance(v, torch.Tensor):
                by_device.setdefault(v.device, []).append(i)
        for indices in by_device.values():
            host = torch.stack([values[i].detach().double().reshape(()) for i in indices]).tolist()
            for i, value in zip(indices, host):
                values[i] = value
        local = {"losses": {}, "task_losses": {}, "weights": {}, "logged": {}}
        for (group, key, _), value in zip(entries, values):
            local[group][key] = float(value)
        local.update(counts=counts, skipped=self._skipped, data_time=self._data_time)
        gathered = comm.all_gather(local)
        self.check_finite(gathered)
        storage = get_event_storage()
        storage.put_scalars(**local["logged"])
        if not comm.is_main_process():
            return
        storage.put_scalar("data_time", max(g["data_time"] for g in gathered))
        losses = {k: np.mean([g["losses"][k] for g in gathered]) for k in loss_dict}
        storage.put_scalar("total_loss", sum(losses.values()))
        if len(losses) > 1:
            storage.put_scalars(**losses)
        storage.put_scalar("skipped_images", sum(g["skipped"] for g in gathered), smoothing_hint=False)
        for task in task_losses:
            storage.put_scalar(f"task_loss/{task}", np.mean([g["task_losses"][task] for g in gathered]))
            storage.put_scalar(f"task_weight/{task}", np.mean([g["weights"][task] for g in gathered]))
            storage.put_scalar(f"allocated/{task}", sum(g["counts"][task] for g in gathered), smoothing_hint=False)

    def state_dict(self):
        next_batch = self._cycle_start if self.policy.holds_batches() else self._loaded
        return {**super().state_dict(), "allocation": self.policy.state_dict(),
                "weighting": self.weighting.state_dict(), "data": {"seed": self.seed, "next_batch": next_batch},
                "grad_scaler": self.grad_scaler.state_dict()}

    def load_state_dict(self, state_dict):
        """Restore :meth:`state_dict`. The scaler's state (empty when it was disabled) is loaded
        into an enabled scaler; a checkpoint without one (written without float16 AMP) starts
        a fresh scaler, whose scale settles within a few steps."""
        super().load_state_dict(state_dict)
        if state_dict.get("grad_scaler"):
            self.grad_scaler.load_state_dict(state_dict["grad_scaler"])
        elif self.grad_scaler.is_enabled():
            logging.getLogger("sta_d2").info("Checkpoint has no GradScaler state: the loss scale starts afresh")
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
