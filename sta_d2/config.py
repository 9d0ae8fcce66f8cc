"""Config keys owned by sta_d2 and their validation.

Every key :func:`add_sta_config` adds has a :class:`Spec` (its type, and its range or allowed
values): in ``SPECS``, or, for a weighting method's hyper-parameters, in the method's
``CONFIG_SPECS``. ``RULES`` check combinations of keys. :func:`validate_sta_config` runs them all
before anything is built; the builders that read the keys (dense model, backbones, data mapper,
weighting methods) run the same checks on what they read, so that building without validating
still fails with an STAConfigError naming the key.
"""
import math
import os
from dataclasses import dataclass
from functools import reduce
from typing import Any, Callable, Dict, List, Sequence, Tuple

import yaml
from detectron2.config import CfgNode as CN


OPTIMIZERS = ("SGD", "ADAM")
# The norms detectron2's get_norm builds from a name ("" is none); "GN" is nn.GroupNorm with
# GROUP_NORM_GROUPS groups, so it needs a channel count divisible by that.
NORMS = ("", "BN", "SyncBN", "naiveSyncBN", "FrozenBN", "GN")
GROUP_NORM_GROUPS = 32
OUTPUT_STRIDES = (8, 16, 32)


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

    # Training-time gradient analysis (sta_d2.engine.hooks.GradientCosineHook): every
    # GRAD_COSINE_PERIOD iterations, log the cosines between the task gradients of the step on the
    # shared parameters (grad/mean_pairwise_cosine, grad_cos/<a>-<b>); 0 = off.
    cfg.STA.ANALYSIS = CN()
    cfg.STA.ANALYSIS.GRAD_COSINE_PERIOD = 0

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


@dataclass(frozen=True)
class Spec:
    """What the value of one config key must be: ``accepts(value)`` tells whether it is,
    ``describe()`` says what it must be (functions, as registries fill up after import)."""

    accepts: Callable[[Any], bool]
    describe: Callable[[], str]

    def check(self, key: str, value) -> None:
        """Raise STAConfigError naming ``cfg.<key>`` unless ``value`` is accepted."""
        if not self.accepts(value):
            _fail(key, value, f"must be {self.describe()}")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _bounds(low, high) -> str:
    if low is not None and high is not None:
        return f" in [{low}, {high}]"
    return f" >= {low}" if low is not None else (f" <= {high}" if high is not None else "")


def integer(low=None, high=None) -> Spec:
    """An int (a bool is not one) in [low, high]; None leaves a side open."""
    return Spec(lambda v: _is_int(v) and (low is None or v >= low) and (high is None or v <= high),
                lambda: "an integer" + _bounds(low, high))


def number(low=None, high=None, positive=False) -> Spec:
    """A finite int or float (not a bool) in [low, high], and > 0 if ``positive``."""
    def accepts(v):
        return ((_is_int(v) or (isinstance(v, float) and math.isfinite(v))) and (low is None or v >= low)
                and (high is None or v <= high) and (not positive or v > 0))

    return Spec(accepts, lambda: "a finite number" + (" > 0" if positive else _bounds(low, high)))


def boolean() -> Spec:
    return Spec(lambda v: isinstance(v, bool), lambda: "true or false")


def text(nonempty=False) -> Spec:
    return Spec(lambda v: isinstance(v, str) and (bool(v) or not nonempty),
                lambda: "a non-empty string" if nonempty else "a string")


def one_of(choices) -> Spec:
    """One of ``choices`` (a sequence, or a function returning one), of the same type: 8.0 is not
    the stride 8, True is not 1."""
    get = choices if callable(choices) else lambda: choices
    return Spec(lambda v: any(type(v) is type(c) and v == c for c in get()),
                lambda: "one of " + ", ".join(map(repr, get())))


def list_of(item: Spec, lengths: Sequence[int] = (), nonempty=False, distinct=False) -> Spec:
    """A list (or tuple) whose entries ``item`` accepts, with one of ``lengths`` entries (any
    number if empty), at least one if ``nonempty``, none twice if ``distinct``."""
    def accepts(v):
        return (isinstance(v, (list, tuple)) and all(item.accepts(x) for x in v)
                and (not lengths or len(v) in lengths) and (v or not nonempty)
                and (not distinct or len(set(v)) == len(v)))

    def describe():
        what = "a non-empty list" if nonempty else "a list"
        if lengths:
            what += f" of {' or '.join(map(str, lengths))} entries"
        if distinct:
            what += " of distinct entries"
        return f"{what}, each {item.describe()}"

    return Spec(accepts, describe)


# The registries and names below are defined by modules that import this one.
def _policies():
    from .allocation.policies import POLICIES

    return sorted(POLICIES)


def _partial_label_modes():
    from .data.partial_labels import MODES

    return ("",) + MODES


def _weighting_methods():
    from .weighting import WEIGHTING_REGISTRY

    return sorted(name for name, _ in WEIGHTING_REGISTRY)


def _dense_tasks():
    from .modeling.dense import DENSE_TASKS

    return DENSE_TASKS


def _dense_heads():
    from .modeling.dense import DENSE_HEAD_REGISTRY

    return sorted(name for name, _ in DENSE_HEAD_REGISTRY)


def _delta_m_metrics():
    from .evaluation.dense import TASK_METRICS

    return [f"{task}/{metric}" for task, metrics in TASK_METRICS.items() for metric in metrics]


SEED = integer(0, 2 ** 64 - 1)  # the range of torch.Generator.manual_seed
# A learnable log-variance s weighing a loss by exp(-s) starts where exp(-s) and exp(s) are finite
# and non-zero in float32.
LOG_VARIANCE = number(-80, 80)
FLOAT32_MAX = 3.4028234663852886e38  # a larger weight is inf in a float32 tensor

# The Spec of every key add_sta_config adds, but the weighting methods' (their CONFIG_SPECS).
SPECS: Dict[str, Spec] = {
    "STA.TASKS": list_of(text(nonempty=True), distinct=True),
    "STA.POLICY": one_of(_policies),
    "STA.TASKS_PER_IMAGE": integer(1),
    "STA.COVER_ALL_TASKS": boolean(),
    "STA.GAP": integer(1),
    "STA.SEED": SEED,
    "STA.ANALYSIS.GRAD_COSINE_PERIOD": integer(0),
    "STA.PARTIAL_LABELS.MODE": one_of(_partial_label_modes),
    "STA.PARTIAL_LABELS.FRACTIONS": list_of(number(0, 1)),
    "STA.PARTIAL_LABELS.SEED": SEED,
    "STA.WEIGHTING.NAME": one_of(_weighting_methods),
    "STA.WEIGHTING.LR": number(0),
    "SOLVER.OPTIMIZER": one_of(OPTIMIZERS),
    "MODEL.DENSE.TASKS": list_of(one_of(_dense_tasks), nonempty=True, distinct=True),
    "MODEL.DENSE.NUM_CLASSES": integer(1),
    "MODEL.DENSE.IGNORE_VALUE": integer(-2 ** 63, 2 ** 63 - 1),  # compared with int64 labels
    "MODEL.DENSE.IN_FEATURE": text(nonempty=True),  # one of the backbone's outputs: build time
    "MODEL.DENSE.HEAD_NAME": one_of(_dense_heads),
    "MODEL.DENSE.HEAD_CHANNELS": integer(1),
    "MODEL.DENSE.ASPP_DILATIONS": list_of(integer(1), lengths=(3,)),  # detectron2's ASPP takes 3
    "MODEL.DENSE.HEAD_NORM": one_of(NORMS),
    "MODEL.RESNETS.OUTPUT_STRIDE": one_of(OUTPUT_STRIDES),
    "MODEL.SEGNET.WIDTHS": list_of(integer(1), nonempty=True),
    "MODEL.SEGNET.NUM_CONVS": list_of(integer(1), nonempty=True),
    "MODEL.SEGNET.NORM": one_of(NORMS),
    "INPUT.DENSE.SIZE": list_of(integer(1), lengths=(0, 2)),
    "INPUT.DENSE.RANDOM_SCALE": list_of(number(1), nonempty=True),
    "TEST.DENSE.BASELINES": text(),  # the file is opened (and checked) with the evaluator
    "TEST.DENSE.DELTA_M_METRICS": list_of(one_of(_delta_m_metrics), distinct=True),
}

# Checks of combinations of keys: (the keys, a function of the config that calls _fail). A rule
# runs once each of its keys has passed its Spec, and names every key it involves.
RULES: List[Tuple[Tuple[str, ...], Callable]] = []


def _rule(*keys):
    def register(check):
        RULES.append((keys, check))
        return check

    return register


@_rule("STA.TASKS_PER_IMAGE", "STA.TASKS")
def _tasks_per_image_fit(cfg):
    tasks, k = list(cfg.STA.TASKS), cfg.STA.TASKS_PER_IMAGE
    if tasks and k > len(tasks):  # with no STA.TASKS, the model's tasks are checked at build time
        _fail("STA.TASKS_PER_IMAGE", k, f"exceeds the number of tasks in cfg.STA.TASKS = {tasks}")


@_rule("STA.PARTIAL_LABELS.MODE", "STA.PARTIAL_LABELS.FRACTIONS", "STA.TASKS")
def _fractions_fit_mode(cfg):
    mode, fractions = cfg.STA.PARTIAL_LABELS.MODE, list(cfg.STA.PARTIAL_LABELS.FRACTIONS)
    tasks = list(cfg.STA.TASKS)
    key, setting = "STA.PARTIAL_LABELS.FRACTIONS", f"cfg.STA.PARTIAL_LABELS.MODE = {mode!r}"
    if mode != "fraction" and fractions:
        _fail(key, fractions, f"only used with the mode 'fraction', not {setting}")
    if mode == "fraction" and not fractions:
        _fail(key, fractions, f"{setting} needs one fraction per task, in the model's order")
    if mode == "fraction" and tasks and len(fractions) != len(tasks):
        _fail(key, fractions, f"{setting} needs one fraction per task of cfg.STA.TASKS = {tasks}")


@_rule("MODEL.DENSE.TASKS", "MODEL.DENSE.NUM_CLASSES", "MODEL.DENSE.IGNORE_VALUE")
def _ignore_value_is_no_class(cfg):
    dense = cfg.MODEL.DENSE
    if "sem_seg" in dense.TASKS and 0 <= dense.IGNORE_VALUE < dense.NUM_CLASSES:
        _fail("MODEL.DENSE.IGNORE_VALUE", dense.IGNORE_VALUE,
              f"is a class label (0..{dense.NUM_CLASSES - 1}) of cfg.MODEL.DENSE.NUM_CLASSES = "
              f"{dense.NUM_CLASSES}; the ignored label must be none of them")


def _fail_group_norm(key, channels, norm_key):
    _fail(key, channels, f"must be divisible by {GROUP_NORM_GROUPS} with cfg.{norm_key} = 'GN' "
          f"(GroupNorm with {GROUP_NORM_GROUPS} groups)")


@_rule("MODEL.DENSE.HEAD_CHANNELS", "MODEL.DENSE.HEAD_NORM")
def _head_channels_fit_norm(cfg):
    dense = cfg.MODEL.DENSE
    if dense.HEAD_NORM == "GN" and dense.HEAD_CHANNELS % GROUP_NORM_GROUPS:
        _fail_group_norm("MODEL.DENSE.HEAD_CHANNELS", dense.HEAD_CHANNELS, "MODEL.DENSE.HEAD_NORM")


@_rule("MODEL.SEGNET.WIDTHS", "MODEL.SEGNET.NUM_CONVS", "MODEL.SEGNET.NORM")
def _segnet_blocks_fit(cfg):
    segnet = cfg.MODEL.SEGNET
    if len(segnet.WIDTHS) != len(segnet.NUM_CONVS):
        _fail("MODEL.SEGNET.NUM_CONVS", segnet.NUM_CONVS,
              f"needs one entry per block of cfg.MODEL.SEGNET.WIDTHS = {list(segnet.WIDTHS)}")
    if segnet.NORM == "GN" and any(w % GROUP_NORM_GROUPS for w in segnet.WIDTHS):
        _fail_group_norm("MODEL.SEGNET.WIDTHS", segnet.WIDTHS, "MODEL.SEGNET.NORM")


@_rule("TEST.DENSE.DELTA_M_METRICS", "TEST.DENSE.BASELINES")
def _delta_m_needs_baselines(cfg):
    if cfg.TEST.DENSE.DELTA_M_METRICS and not cfg.TEST.DENSE.BASELINES:
        _fail("TEST.DENSE.DELTA_M_METRICS", cfg.TEST.DENSE.DELTA_M_METRICS,
              "delta_m needs the single-task results of cfg.TEST.DENSE.BASELINES = ''")


def owned_specs() -> Dict[str, Spec]:
    """The Spec of every key add_sta_config adds: ``SPECS`` and the weighting methods'."""
    from .weighting import WEIGHTING_REGISTRY

    specs = dict(SPECS)
    for _, method in WEIGHTING_REGISTRY:
        specs.update({method.config_key(key): method.CONFIG_SPECS[key] for key in method.CONFIG})
    return specs


def check_value(key: str, value) -> None:
    """Check ``value`` against the Spec of ``key`` (e.g. ``"INPUT.DENSE.SIZE"``)."""
    owned_specs()[key].check(key, value)


def check_keys(cfg, prefix: str = "") -> None:
    """Check the keys of ``cfg`` under ``prefix`` (a key or a node, e.g. ``"MODEL.DENSE"``; "":
    every key sta_d2 owns) against their Specs, then the RULES whose keys are all under it."""
    def under(key):
        return not prefix or key == prefix or key.startswith(prefix + ".")

    for key, spec in owned_specs().items():
        if under(key):
            spec.check(key, reduce(lambda node, name: node[name], key.split("."), cfg))
    for keys, rule in RULES:
        if all(map(under, keys)):
            rule(cfg)


def validate_sta_config(cfg):
    """Check every key sta_d2 owns (type, range, allowed values) and their combinations; raise
    STAConfigError naming the first bad key. What needs the model (STA.TASKS against its tasks,
    a method's per-task values) is checked when it is built."""
    check_keys(cfg)


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


def load_config(path: str, opts=()):
    """detectron2's default config with sta_d2's keys, the file ``path`` (see
    :func:`merge_config_file`) and the command-line overrides ``opts`` merged, then validated."""
    from detectron2.config import get_cfg

    cfg = get_cfg()
    add_sta_config(cfg)
    merge_config_file(cfg, path)
    cfg.merge_from_list(list(opts))
    validate_sta_config(cfg)
    return cfg
