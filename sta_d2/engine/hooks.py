"""Training hooks of sta_d2."""
import random
from contextlib import contextmanager

import numpy as np
import torch
from detectron2.engine import HookBase
from detectron2.utils.events import get_event_storage

from ..analysis.gradient_angles import pairwise_cosines, shared_task_gradients
from ..specs import ConfigKeys, Key, integer
from .train_loop import unwrap_model


CONFIG_KEYS = ConfigKeys({
    # Every GRAD_COSINE_PERIOD iterations, log the cosines between the step's task gradients on the
    # shared parameters (GradientCosineHook); 0 = off.
    "STA.ANALYSIS.GRAD_COSINE_PERIOD": Key(0, integer(0)),
})


class GradientCosineHook(HookBase):
    """Every ``period`` iterations (those with (iter + 1) % period == 0, like detectron2's
    periodic hooks), log the cosines between the task gradients on the shared parameters:
    ``grad_cos/<a>-<b>`` per pair of tasks and ``grad/mean_pairwise_cosine``, their mean, into
    EventStorage (so into metrics.json and TensorBoard, unsmoothed; a writer keeps the latest value
    of each of its periods, so a period that is a multiple of the writers' keeps every value).

    They are the gradients of the step itself: its batch and allocation, at the parameters
    before its update. A forward pre-hook, armed in ``before_step``, catches the step's training
    forward, runs one more forward on the same inputs and differentiates each task's loss
    (:func:`sta_d2.analysis.shared_task_gradients`: ``.grad`` untouched, averaged over
    processes), then lets the training forward go on. A fresh batch would need a second loader;
    the trainer's own is a resumable stream that must not be read ahead. The measurement
    restores what it changes, so training is exactly as without the hook: the torch, numpy and
    random generator states and the model's buffers (BatchNorm statistics). A pair whose task
    has no image in the step (on any process) is not logged; a step with fewer than two such
    tasks logs nothing. Cost: one forward and one backward per task on measured steps.
    """

    def __init__(self, period: int):
        self.period = period

    def before_step(self):
        if (self.trainer.iter + 1) % self.period == 0:
            self._handle = unwrap_model(self.trainer.model).register_forward_pre_hook(self._measure)

    def _measure(self, model, args):
        self._handle.remove()  # measure this forward only (and not the measurement's own)
        with _state_restored(model):
            grads = shared_task_gradients(model, args[0])  # under the step's autocast, if any
        with torch.autocast(model.device.type, enabled=False):
            cosines = pairwise_cosines(grads, model.tasks)
        if cosines:
            values = {f"grad_cos/{pair}": c for pair, c in cosines.items()}
            values["grad/mean_pairwise_cosine"] = sum(cosines.values()) / len(cosines)
            # raw values: detectron2's writers would show medians of the last 20 otherwise
            get_event_storage().put_scalars(smoothing_hint=False, **values)


@contextmanager
def _state_restored(model):
    """Restore the random generators (torch on the CPU and the model's GPU, numpy, random) and
    the model's buffers on exit."""
    buffers = [b.detach().clone() for b in model.buffers()]
    numpy_state, random_state = np.random.get_state(), random.getstate()
    devices = [model.device] if model.device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices):
            yield
    finally:
        with torch.no_grad():
            for b, saved in zip(model.buffers(), buffers):
                b.copy_(saved)
        np.random.set_state(numpy_state)
        random.setstate(random_state)
