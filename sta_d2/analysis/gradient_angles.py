"""Angles between gradients on the shared parameters under FT, STA and ISTA (the paper's
Figures 1 and 2: allocation is claimed to reduce the conflict between task gradients).

Every gradient here is taken with respect to ``model.shared_parameters()`` (the backbone), from
model inputs that carry their allocation (:meth:`sta_d2.allocation.TaskAssignment.attach`), with
:func:`sta_d2.weighting.gradients.task_gradients`: averaged over processes, the model's
parameters and ``.grad`` left untouched. A gradient that is exactly zero (a task allocated to no
image has an exact-zero loss) is "no gradient": pairs involving it get no angle.
"""
import math
from itertools import combinations
from typing import Dict, Iterable, List, Optional, Sequence

import torch

from ..allocation import TASKS_KEY, FullTaskPolicy, ISTAPolicy, StochasticPolicy
from ..weighting.gradients import cosine_matrix, pair_values, task_gradients

#: the allocations compared, by their cfg.STA.POLICY names
KINDS = ("full", "sta", "ista")


def shared_task_gradients(model, inputs: List[dict]) -> torch.Tensor:
    """(num tasks, num shared parameters): the gradient of each task's loss (``model.tasks``
    order) on ``inputs``, i.e. on the images allocated that task."""
    losses = model.task_losses(model(inputs))
    return task_gradients([losses[t] for t in model.tasks], model.shared_parameters())[0]


def shared_step_gradient(model, inputs: List[dict]) -> torch.Tensor:
    """(num shared parameters,): the gradient of the summed task losses on ``inputs``, what one
    optimizer step with equal task weights puts on the shared parameters."""
    losses = model.task_losses(model(inputs))
    return task_gradients([sum(losses.values())], model.shared_parameters())[0][0]


def pair_names(names: Sequence[str]) -> List[str]:
    """``"a-b"`` for each pair of names, in the order of :func:`pair_values`."""
    return [f"{a}-{b}" for a, b in combinations(names, 2)]


def pairwise_cosines(grads: torch.Tensor, names: Sequence[str]) -> Dict[str, float]:
    """Cosine between each pair of rows of ``grads`` (named by :func:`pair_names` of ``names``),
    leaving out the pairs with a zero row (no gradient)."""
    has_gradient = grads.norm(dim=1) > 0
    both = pair_values(has_gradient[:, None] & has_gradient[None, :]).tolist()
    cosines = pair_values(cosine_matrix(grads)).tolist()
    return {name: c for name, c, ok in zip(pair_names(names), cosines, both) if ok}


def angle(cosine: Optional[float]) -> Optional[float]:
    """The angle in degrees of a cosine (None stays None)."""
    return None if cosine is None else math.degrees(math.acos(max(-1.0, min(1.0, cosine))))


def gradient_angles(model, batches: Iterable[List[dict]], tasks_per_image: int, generator: torch.Generator,
                    cover_all_tasks: bool = True) -> dict:
    """Gradient angles on each batch under the three allocations, at the model's current
    parameters (the model is put in training mode, its parameters are never updated).

    - ``full`` (FT) and ``sta``: the angle between the gradients of every pair of tasks, each
      task's gradient taken on the images allocated it (FT: every labelled image; STA: a draw of
      :class:`StochasticPolicy` with ``tasks_per_image`` and ``cover_all_tasks``).
    - ``ista``: the angle between the gradients of consecutive sub-steps s and s+1 of
      :class:`ISTAPolicy` on the batch, the gradient of a sub-step being that of the sum of its
      task losses under its allocation (:func:`shared_step_gradient`). All sub-steps are measured
      at the same parameters: the angle shows what the allocations alone change, not the drift
      of the parameters that ISTA's optimizer step between sub-steps adds in training.
      (The paper's Fig. 2 does not say whether the parameters are updated between sub-steps;
      this is our choice.)

    STA and ISTA draw their allocations from ``generator``, batch by batch (STA, then ISTA), so a
    run is reproducible. A pair without an angle (a task or sub-step with no gradient, e.g. a task
    the draw gave no image) is recorded as None and counted in ``skipped``.

    Returns a JSON-ready dict: ``tasks``, ``tasks_per_image``, ``num_batches``;
    ``angles[kind][pair]``, one angle in degrees (or None) per batch, pairs ``"<task>-<task>"``
    for ``full``/``sta`` and ``"<s>-<s+1>"`` (sub-steps from 1) for ``ista``;
    ``mean[kind][pair]`` over the batches with an angle (None if none) and
    ``skipped[kind][pair]``; ``allocations[kind]``, per batch, per (sub-)step, per image, the
    tasks allocated to it.
    """
    model.train()
    tasks = list(model.tasks)
    policies = {
        "full": FullTaskPolicy(tasks, tasks_per_image, generator),
        "sta": StochasticPolicy(tasks, tasks_per_image, generator, cover_all_tasks),
    }
    ista = ISTAPolicy(tasks, tasks_per_image, generator)
    substeps = [str(s) for s in range(1, ista.steps_per_batch + 1)]
    consecutive = [f"{a}-{b}" for a, b in zip(substeps, substeps[1:])]
    angles = {kind: {pair: [] for pair in pair_names(tasks)} for kind in policies}
    angles["ista"] = {pair: [] for pair in consecutive}
    allocations = {kind: [] for kind in KINDS}

    for batch in batches:
        for kind, policy in policies.items():
            inputs = policy.next_step(lambda: batch, model.task_availability)[1].attach(batch)
            cosines = pairwise_cosines(shared_task_gradients(model, inputs), tasks)
            for pair, values in angles[kind].items():
                values.append(angle(cosines.get(pair)))
            allocations[kind].append([_allocated(inputs)])
        steps = [ista.next_step(lambda: batch, model.task_availability)[1].attach(batch) for _ in substeps]
        cosines = pairwise_cosines(torch.stack([shared_step_gradient(model, inputs) for inputs in steps]), substeps)
        for pair, values in angles["ista"].items():
            values.append(angle(cosines.get(pair)))
        allocations["ista"].append([_allocated(inputs) for inputs in steps])

    measured = {kind: {pair: [v for v in values if v is not None] for pair, values in pairs.items()}
                for kind, pairs in angles.items()}
    return {
        "tasks": tasks,
        "tasks_per_image": tasks_per_image,
        "num_batches": len(allocations["full"]),
        "angles": angles,
        "mean": {kind: {pair: sum(v) / len(v) if v else None for pair, v in pairs.items()}
                 for kind, pairs in measured.items()},
        "skipped": {kind: {pair: len(angles[kind][pair]) - len(v) for pair, v in pairs.items()}
                    for kind, pairs in measured.items()},
        "allocations": allocations,
    }


def _allocated(inputs: List[dict]) -> List[List[str]]:
    return [list(x[TASKS_KEY]) for x in inputs]


# Histogram panels: inches per panel, dots per inch, 5-degree bins.
