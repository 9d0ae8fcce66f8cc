"""sta_d2's configuration: the keys its components declare, assembled; YAML loading.

Each component declares the keys it reads, with their defaults and specs (``sta_d2.specs``), in
its own module. This module only puts them together: :func:`add_sta_config` installs every
default, :func:`validate_sta_config` checks every key and then every rule, once, on a finished
config. :func:`load_config` is that finished config for a YAML file and command-line overrides.
"""
import difflib
import os
import re
from typing import Dict, Iterator, List

import yaml

from .allocation import policy
from .data import dense_mapper, partial_labels
from .engine import hooks, trainer
from .evaluation import dense as dense_evaluation
from .modeling import task_set
from .modeling.backbone import dilated_resnet, segnet
from .modeling.dense import heads as dense_heads
from .modeling.dense import meta_arch as dense_meta_arch
from .specs import ConfigKeys, Key, Rule, STAConfigError, value_at
from .weighting import base as weighting_base

# A `_BASE_` that starts with this prefix names a config of detectron2's installed model zoo.
MODEL_ZOO_PREFIX = "model_zoo:"


def _declarations() -> List[ConfigKeys]:
    """The key declarations of every component."""
    return [
        policy.CONFIG_KEYS, ConfigKeys(policy.policy_config_keys()), task_set.CONFIG_KEYS,
        weighting_base.CONFIG_KEYS, ConfigKeys(weighting_base.method_config_keys()), trainer.CONFIG_KEYS,
        hooks.CONFIG_KEYS, partial_labels.CONFIG_KEYS, dense_meta_arch.CONFIG_KEYS, dense_heads.CONFIG_KEYS,
        dilated_resnet.CONFIG_KEYS, segnet.CONFIG_KEYS, dense_mapper.CONFIG_KEYS, dense_evaluation.CONFIG_KEYS,
    ]


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
        raise STAConfigError(f"config file {path!r}: {_merge_error(e, cfg)}") from e


def load_config(path: str, opts=()):
    """The finished config: detectron2's defaults with sta_d2's keys, the file ``path`` (see
    :func:`merge_config_file`) and the command-line overrides ``opts`` merged, then validated."""
    from detectron2.config import get_cfg

    cfg = get_cfg()
    add_sta_config(cfg)
    merge_config_file(cfg, path)
    try:
        cfg.merge_from_list(list(opts))
    except (KeyError, ValueError, AssertionError) as e:
        raise STAConfigError(f"command-line overrides: {_merge_error(e, cfg)}") from e
    validate_sta_config(cfg)
    return cfg


def _dotted_keys(node, prefix="") -> Iterator[str]:
    for name, value in node.items():
        yield prefix + name
        if isinstance(value, dict):
            yield from _dotted_keys(value, f"{prefix}{name}.")


def _merge_error(error, cfg) -> str:
    """yacs' merge error, and for a key that does not exist the closest existing keys."""
    unknown = re.search(r"Non-existent (?:config )?key: ([\w.]+)", str(error))
    if not unknown:
        return str(error).strip("'\"")
    key = unknown.group(1)
    close = difflib.get_close_matches(key, list(_dotted_keys(cfg)), n=3, cutoff=0.6)
    guess = (f"did you mean {close[0]}?" + (f" (or {', '.join(close[1:])})" if close[1:] else "") if close else
             "no existing key is close to it (docs/configuration.md lists sta_d2's keys)")
    return f"{key} is not a config key; {guess}"

