"""Config keys owned by sta_d2 and their validation."""
import os

import yaml
from detectron2.config import CfgNode as CN


OPTIMIZERS = ("SGD", "ADAM")


class STAConfigError(ValueError):
    """A sta_d2 config value is invalid; the message names the key."""


def add_sta_config(cfg):
    """Add every config key sta_d2 owns (under ``cfg.STA``) to a detectron2 config."""
    cfg.STA = CN()
    # Tasks to allocate. Empty means every task the model has; otherwise it must name exactly the
    # model's tasks (R-CNN models: "det" = RPN + box head, "mask", "sem_seg").
    cfg.STA.TASKS = []
    # Allocation policy: "full" (every task on every image), "sta" (each image gets
    # TASKS_PER_IMAGE random tasks per step), "ista" (the batch is revisited until every image has
    # used every task, one optimizer step per sub-step), "gap" (like "ista", but a batch is
    # revisited GAP steps later instead of at the next step).
    cfg.STA.POLICY = "full"
    cfg.STA.TASKS_PER_IMAGE = 1
    # "sta": redraw until every task has at least one image in the batch (when batch size allows).
    cfg.STA.COVER_ALL_TASKS = True
    # "gap": number of steps between two visits of a batch (1 is "ista").
    cfg.STA.GAP = 2
    # Seed of the allocation generator; each process uses (SEED, rank).
    cfg.STA.SEED = 0

    # Simulated partial labels on a fully labelled training set: MODE "" (off), "one_per_image"
    # (each image keeps one task's labels) or "fraction" (task t keeps its labels on a share
    # FRACTIONS[t] of the images; tasks in the model's order); draws fixed by SEED and image id.
    cfg.STA.PARTIAL_LABELS = CN()
    cfg.STA.PARTIAL_LABELS.MODE = ""
    cfg.STA.PARTIAL_LABELS.FRACTIONS = []
    cfg.STA.PARTIAL_LABELS.SEED = 0

    # How task losses become the update (sta_d2.weighting): a class registered in
    # WEIGHTING_REGISTRY; each method's hyper-parameters live in cfg.STA.WEIGHTING.<its node>.
    # LR is the learning rate of the method's own parameters (0: SOLVER.BASE_LR).
    cfg.STA.WEIGHTING = CN()
    cfg.STA.WEIGHTING.NAME = "EqualWeighting"
    cfg.STA.WEIGHTING.LR = 0.0
    from .weighting import WEIGHTING_REGISTRY  # the methods import this module's error type

    for _, method in WEIGHTING_REGISTRY:
        if method.CONFIG_NAME:
            cfg.STA.WEIGHTING[method.CONFIG_NAME] = CN(dict(method.CONFIG))

    # Optimizer: "SGD" (detectron2's, with SOLVER.MOMENTUM and NESTEROV) or "ADAM" (used by the
    # dense NYUv2 / Cityscapes settings of the paper).
    cfg.SOLVER.OPTIMIZER = "SGD"

    # Dense multi-task models (meta-architecture "DenseMultiTaskNet"): a shared backbone and one
    # head per task. Tasks: "sem_seg", "depth" (metres), "disparity" (pixels), "normal".
    cfg.MODEL.DENSE = CN()
    cfg.MODEL.DENSE.TASKS = ["sem_seg", "depth"]
    cfg.MODEL.DENSE.NUM_CLASSES = 13
    cfg.MODEL.DENSE.IGNORE_VALUE = 255
    cfg.MODEL.DENSE.IN_FEATURE = "res5"  # the backbone output the heads read
    cfg.MODEL.DENSE.HEAD_NAME = "ASPPHead"  # "ASPPHead" (DeepLab-style) or "SegNetHead"
    cfg.MODEL.DENSE.HEAD_CHANNELS = 256
    cfg.MODEL.DENSE.ASPP_DILATIONS = [12, 24, 36]
    # GroupNorm by default: with allocation a head may see a sub-batch of one image.
    cfg.MODEL.DENSE.HEAD_NORM = "GN"
    # "build_dilated_resnet_backbone": detectron2's ResNet with res4/res5 dilated instead of
    # strided down to this output stride (8, 16 or 32).
    cfg.MODEL.RESNETS.OUTPUT_STRIDE = 8
    # "build_segnet_backbone": the SegNet encoder-decoder of the NYUv2-13 experiments.
    cfg.MODEL.SEGNET = CN()
    cfg.MODEL.SEGNET.WIDTHS = [64, 128, 256, 512, 512]
    cfg.MODEL.SEGNET.NUM_CONVS = [2, 2, 3, 3, 3]
    cfg.MODEL.SEGNET.NORM = "BN"

    # Dense multi-task data: every image and target is resized to SIZE = (H, W) (empty: keep the
    # stored size); in training each image is also rescaled by a factor drawn from RANDOM_SCALE
    # and cropped back (depth divided, disparity multiplied by the factor).
    cfg.INPUT.DENSE = CN()
    cfg.INPUT.DENSE.SIZE = []
    cfg.INPUT.DENSE.RANDOM_SCALE = [1.0]
    # Dense evaluation: multi-task gain (delta_m) against single-task results in BASELINES (a JSON
    # file {task: {metric: value}}; empty: no delta_m) over DELTA_M_METRICS ("task/metric" names;
    # empty: every metric of the baseline file).
    cfg.TEST.DENSE = CN()
    cfg.TEST.DENSE.BASELINES = ""
    cfg.TEST.DENSE.DELTA_M_METRICS = []


def _fail(key, value, why):
    raise STAConfigError(f"cfg.{key} = {value!r}: {why}")


def validate_sta_config(cfg):
    """Check the values of ``cfg.STA``; raise STAConfigError naming the first bad key."""
    from .allocation.policies import POLICIES  # the policies import this module's error type

    sta = cfg.STA
    tasks = list(sta.TASKS)
    if not all(isinstance(t, str) and t for t in tasks):
        _fail("STA.TASKS", sta.TASKS, "must be a list of task names")
    if len(set(tasks)) != len(tasks):
        _fail("STA.TASKS", sta.TASKS, "names a task twice")
    if sta.POLICY not in POLICIES:
        _fail("STA.POLICY", sta.POLICY, f"unknown policy; choose one of {', '.join(sorted(POLICIES))}")
    k = sta.TASKS_PER_IMAGE
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        _fail("STA.TASKS_PER_IMAGE", k, "must be an integer >= 1")
    if tasks and k > len(tasks):
        _fail("STA.TASKS_PER_IMAGE", k, f"exceeds the number of tasks in STA.TASKS ({len(tasks)})")
    gap = sta.GAP
    if isinstance(gap, bool) or not isinstance(gap, int) or gap < 1:
        _fail("STA.GAP", gap, "must be an integer >= 1")
    if not isinstance(sta.COVER_ALL_TASKS, bool):
        _fail("STA.COVER_ALL_TASKS", sta.COVER_ALL_TASKS, "must be true or false")
    from .weighting import WEIGHTING_REGISTRY

    if cfg.STA.WEIGHTING.NAME not in dict(WEIGHTING_REGISTRY):
        _fail("STA.WEIGHTING.NAME", cfg.STA.WEIGHTING.NAME,
              f"unknown method; choose one of {', '.join(sorted(dict(WEIGHTING_REGISTRY)))}")
    if cfg.STA.PARTIAL_LABELS.MODE not in ("", "one_per_image", "fraction"):
        _fail("STA.PARTIAL_LABELS.MODE", cfg.STA.PARTIAL_LABELS.MODE,
              "choose '' (off), 'one_per_image' or 'fraction'")
    if cfg.STA.WEIGHTING.LR < 0:
        _fail("STA.WEIGHTING.LR", cfg.STA.WEIGHTING.LR, "must be >= 0")
    if cfg.SOLVER.OPTIMIZER not in OPTIMIZERS:
        _fail("SOLVER.OPTIMIZER", cfg.SOLVER.OPTIMIZER, f"choose one of {', '.join(OPTIMIZERS)}")
    seed = sta.SEED
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        _fail("STA.SEED", seed, "must be an integer >= 0")


# A `_BASE_` that starts with this prefix names a config of detectron2's installed model zoo.
MODEL_ZOO_PREFIX = "model_zoo:"


def merge_config_file(cfg, path: str) -> None:
    """``cfg.merge_from_file`` that also resolves ``_BASE_: "model_zoo:<name>"``.

    sta_d2's configs build on detectron2's model-zoo configs, which live inside the installed
    detectron2 package; detectron2 only resolves ``_BASE_`` relative to the file, so this prefix
    lets them refer to the installed copy wherever it is.
    """
    from detectron2 import model_zoo

    if not os.path.isfile(path):
        raise FileNotFoundError(f"config file {path!r} does not exist")
    try:
        with open(path) as f:
            content = yaml.safe_load(f) or {}
    except yaml.YAMLError as e:
        raise STAConfigError(f"config file {path!r} is not valid YAML: {e}") from e
    base = content.pop("_BASE_", None)
    if base is not None and base.startswith(MODEL_ZOO_PREFIX):
        cfg.merge_from_file(model_zoo.get_config_file(base[len(MODEL_ZOO_PREFIX):]))
    elif base is not None:
        merge_config_file(cfg, os.path.join(os.path.dirname(path), base))
    try:
        cfg.merge_from_other_cfg(type(cfg)(content))
    except (KeyError, ValueError, AssertionError) as e:
        raise STAConfigError(f"config file {path!r}: {e}") from e
