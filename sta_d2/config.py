"""sta_d2's configuration: the keys its components declare, assembled; YAML loading.

Each component declares the keys it reads, with their defaults and specs (``sta_d2.specs``), in
its own module. This module only puts them together: :func:`add_sta_config` installs every
default, :func:`validate_sta_config` checks every key and then every rule, once, on a finished
config. :func:`load_config` is that finished config for a YAML file and command-line overrides.
"""
import os
from typing import Dict, List

import yaml

from .specs import STAConfigError, ConfigKeys, Key, Rule, value_at

# A `_BASE_` that starts with this prefix names a config of detectron2's installed model zoo.
MODEL_ZOO_PREFIX = "model_zoo:"


def _declarations() -> List[ConfigKeys]:
    """The key declarations of every component."""
    from . import allocation, weighting
    from .engine import hooks, trainer
    from .data import dense_mapper, partial_labels
    from .evaluation import dense as dense_evaluation
    from .modeling import task_set
    from .modeling.backbone import dilated_resnet, segnet
    from .modeling.dense import heads, meta_arch

    declared = [
        allocation.CONFIG_KEYS, ConfigKeys(allocation.policy_config_keys()), task_set.CONFIG_KEYS,
        weighting.CONFIG_KEYS, ConfigKeys(weighting.method_config_keys()), trainer.CONFIG_KEYS, hooks.CONFIG_KEYS,
    ]
    dense = [partial_labels, meta_arch, heads, dilated_resnet, segnet, dense_mapper, dense_evaluation]
    declared += [m.CONFIG_KEYS for m in dense if hasattr(m, "CONFIG_KEYS")]
    if not all(hasattr(m, "CONFIG_KEYS") for m in dense):
        have = {name for d in declared for name, _ in d}
        rest = ConfigKeys({n: k for n, k in _transitional() if n not in have})
        declared.append(rest)
    return declared


def owned_keys() -> Dict[str, Key]:
    """Every key sta_d2 owns, by dotted name."""
    keys: Dict[str, Key] = {}
    for declared in _declarations():
        for name, key in declared:
            if name in keys:
                raise KeyError(f"config key {name} is declared twice")
            keys[name] = key
    return keys


def _rules() -> List[Rule]:
    return [rule for declared in _declarations() for rule in declared.rules]


def add_sta_config(cfg) -> None:
    """Add every config key sta_d2 owns, with its default, to a detectron2 config."""
    ConfigKeys(owned_keys()).add_to(cfg)


def validate_sta_config(cfg) -> None:
    """Check every key sta_d2 owns (type, range, allowed values), then their combinations,
    including the tasks against the model the config describes; raise STAConfigError naming the
    first bad key. Call it once the config is finished (:func:`load_config` does)."""
    for name, key in owned_keys().items():
        key.spec.check(name, value_at(cfg, name))
    for _, rule in _rules():
        rule(cfg)


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
    """The finished config: detectron2's defaults with sta_d2's keys, the file ``path`` (see
    :func:`merge_config_file`) and the command-line overrides ``opts`` merged, then validated."""
    from detectron2.config import get_cfg

    cfg = get_cfg()
    add_sta_config(cfg)
    merge_config_file(cfg, path)
    cfg.merge_from_list(list(opts))
    validate_sta_config(cfg)
    return cfg


# --- TRANSITION: dense keys until their modules declare them (removed when they do) ----------
from .specs import NORMS, GROUP_NORM_GROUPS, fail as _fail, integer, list_of, number, one_of, text  # noqa: E402


def _transitional() -> ConfigKeys:
    from .modeling.dense import DENSE_HEAD_REGISTRY, DENSE_TASKS
    from .evaluation.dense import TASK_METRICS
    from .data.partial_labels import MODES
    from .specs import SEED, boolean

    keys = ConfigKeys({
        "STA.PARTIAL_LABELS.MODE": Key("", one_of(("",) + MODES)),
        "STA.PARTIAL_LABELS.FRACTIONS": Key([], list_of(number(0, 1))),
        "STA.PARTIAL_LABELS.SEED": Key(0, SEED),
        "MODEL.DENSE.TASKS": Key(["sem_seg", "depth"], list_of(one_of(DENSE_TASKS), nonempty=True, distinct=True)),
        "MODEL.DENSE.NUM_CLASSES": Key(13, integer(1)),
        "MODEL.DENSE.IGNORE_VALUE": Key(255, integer(-2 ** 63, 2 ** 63 - 1)),
        "MODEL.DENSE.IN_FEATURE": Key("res5", text(nonempty=True)),
        "MODEL.DENSE.HEAD_NAME": Key("ASPPHead", one_of(lambda: sorted(n for n, _ in DENSE_HEAD_REGISTRY))),
        "MODEL.DENSE.HEAD_CHANNELS": Key(256, integer(1)),
        "MODEL.DENSE.ASPP_DILATIONS": Key([12, 24, 36], list_of(integer(1), lengths=(3,))),
        "MODEL.DENSE.HEAD_NORM": Key("GN", one_of(NORMS)),
        "MODEL.RESNETS.OUTPUT_STRIDE": Key(8, one_of((8, 16, 32))),
        "MODEL.SEGNET.WIDTHS": Key([64, 128, 256, 512, 512], list_of(integer(1), nonempty=True)),
        "MODEL.SEGNET.NUM_CONVS": Key([2, 2, 3, 3, 3], list_of(integer(1), nonempty=True)),
        "MODEL.SEGNET.NORM": Key("BN", one_of(NORMS)),
        "INPUT.DENSE.SIZE": Key([], list_of(integer(1), lengths=(0, 2))),
        "INPUT.DENSE.RANDOM_SCALE": Key([1.0], list_of(number(1), nonempty=True)),
        "TEST.DENSE.BASELINES": Key("", text()),
        "TEST.DENSE.DELTA_M_METRICS": Key([], list_of(one_of(
            [f"{t}/{m}" for t, ms in TASK_METRICS.items() for m in ms]), distinct=True)),
    })
    return keys


def check_keys(cfg, prefix=""):
    pass


def check_value(key, value):
    pass
