"""The task set of a model, as configured by ``cfg.STA.TASKS``."""
from typing import List, Sequence

from ..config import STAConfigError


def resolve_tasks(cfg, model_tasks: Sequence[str]) -> List[str]:
    """``cfg.STA.TASKS`` checked against the tasks the model has (all of them when empty)."""
    tasks = list(cfg.STA.TASKS) or list(model_tasks)
    unknown = [t for t in tasks if t not in model_tasks]
    if unknown:
        raise STAConfigError(
            f"cfg.STA.TASKS = {list(cfg.STA.TASKS)}: the model has no task {unknown[0]!r} "
            f"(its tasks are {list(model_tasks)}, set by the model part of the config)"
        )
    missing = [t for t in model_tasks if t not in tasks]
    if missing:
        raise STAConfigError(
            f"cfg.STA.TASKS = {list(cfg.STA.TASKS)} leaves out the model's task {missing[0]!r}; "
            f"list every task of the model or leave STA.TASKS empty"
        )
    return tasks
