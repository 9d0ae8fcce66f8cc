"""The task set of a model, as configured by ``cfg.STA.TASKS``, and its check against the model
the config describes."""
from typing import List, Sequence

from detectron2.modeling import META_ARCH_REGISTRY

from ..specs import ConfigKeys, Key, fail, list_of, text

CONFIG_KEYS = ConfigKeys({
    # Tasks to allocate. Empty: every task the model has; otherwise exactly the model's tasks, in
    # the order given (R-CNN models: "det" = RPN + box head, "mask", "keypoint", "sem_seg").
    "STA.TASKS": Key([], list_of(text(nonempty=True), distinct=True)),
})


def resolve_tasks(cfg, model_tasks: Sequence[str]) -> List[str]:
    """The tasks of a model with ``model_tasks``: ``cfg.STA.TASKS``, or all of them when empty."""
    return list(cfg.STA.TASKS) or list(model_tasks)


@CONFIG_KEYS.rule("STA.TASKS", "STA.TASKS_PER_IMAGE", "MODEL.META_ARCHITECTURE")
def _tasks_fit_the_model(cfg):
    """The meta-architecture is an sta_d2 multi-task model, STA.TASKS names exactly its tasks, and
    an image can be given STA.TASKS_PER_IMAGE of them."""
    name = cfg.MODEL.META_ARCHITECTURE
    try:
        arch = META_ARCH_REGISTRY.get(name)
    except KeyError:
        fail("MODEL.META_ARCHITECTURE", name, "is not a registered meta-architecture")
    if not hasattr(arch, "model_tasks"):
        fail("MODEL.META_ARCHITECTURE", name, "does not declare tasks; use an sta_d2 meta-architecture "
             "(STAGeneralizedRCNN, STAPanopticFPN, DenseMultiTaskNet)")
    model_tasks = arch.model_tasks(cfg)
    tasks = list(cfg.STA.TASKS)
    k = cfg.STA.TASKS_PER_IMAGE
    if k > len(tasks or model_tasks):
        fail("STA.TASKS_PER_IMAGE", k, f"exceeds the number of tasks ({', '.join(tasks or model_tasks)}: "
             f"cfg.STA.TASKS = {tasks}, or the model's tasks when it is empty)")
    unknown = [t for t in tasks if t not in model_tasks]
    if unknown:
        fail("STA.TASKS", tasks, f"the model has no task {unknown[0]!r} (its tasks are {list(model_tasks)}, "
             "set by the model part of the config)")
    missing = [t for t in model_tasks if tasks and t not in tasks]
    if missing:
        fail("STA.TASKS", tasks, f"leaves out the model's task {missing[0]!r}; list every task of the "
             "model or leave STA.TASKS empty")
