"""Config keys as components declare them, and the error that names a bad value.

A component that reads config keys owns them: it declares each one, with its default and its
:class:`Spec` (what the value must be), in a :class:`ConfigKeys` next to the code that reads it,
plus the rules that check combinations of keys. ``sta_d2.config`` assembles the declarations:
``add_sta_config`` installs the defaults and ``validate_sta_config`` runs every spec, then every
rule, once, on the finished config. This module imports nothing of sta_d2, so every component can
use it.
"""
import copy
import math
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterator, List, Sequence, Tuple

from detectron2.config import CfgNode


class STAConfigError(ValueError):
    """A sta_d2 config value is invalid; the message names the key."""


def fail(key: str, value, why: str):
    """Raise STAConfigError naming ``cfg.<key>``, its value and what is wrong with it."""
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
            fail(key, value, f"must be {self.describe()}")


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


def registered(registry) -> Spec:
    """The name of an object registered in a detectron2 ``Registry``."""
    return one_of(lambda: sorted(name for name, _ in registry))


SEED = integer(0, 2 ** 64 - 1)  # the range of torch.Generator.manual_seed
# A learnable log-variance s weighing a loss by exp(-s) starts where exp(-s) and exp(s) are finite
# and non-zero in float32.
LOG_VARIANCE = number(-80, 80)
FLOAT32_MAX = 3.4028234663852886e38  # a larger weight is inf in a float32 tensor
# The norms detectron2's get_norm builds from a name ("" is none); "GN" is nn.GroupNorm with
# GROUP_NORM_GROUPS groups, so it needs a channel count divisible by that.
NORMS = ("", "BN", "SyncBN", "naiveSyncBN", "FrozenBN", "GN")
GROUP_NORM_GROUPS = 32


@dataclass(frozen=True)
class Key:
    """One config key: its default value and what a value must be."""

    default: Any
    spec: Spec


def value_at(cfg, key: str):
    """The value of the dotted ``key`` in ``cfg``."""
    node = cfg
    for name in key.split("."):
        node = node[name]
    return node


def argument_name(key: str) -> str:
    """The constructor argument a key's value is passed as: its last part, lower case
    (``"STA.GAP"`` -> ``"gap"``)."""
    return key.rsplit(".", 1)[-1].lower()


Rule = Tuple[Tuple[str, ...], Callable]


class ConfigKeys:
    """The config keys one component owns (dotted name -> :class:`Key`) and its rules.

    A rule checks a combination of keys: a function of the config that raises (see :func:`fail`)
    naming every key it involves. Rules run after every key has passed its spec.
    """

    def __init__(self, keys: Dict[str, Key]):
        self.keys = dict(keys)
        self.rules: List[Rule] = []

    def rule(self, *keys: str):
        """Decorator: register a rule over ``keys`` (the keys it reads and names)."""
        def register(check):
            self.rules.append((keys, check))
            return check

        return register

    def __iter__(self) -> Iterator[Tuple[str, Key]]:
        return iter(self.keys.items())

    def add_to(self, cfg) -> None:
        """Install the defaults in ``cfg``, creating the nodes on their paths."""
        for key, declared in self.keys.items():
            *path, leaf = key.split(".")
            node = cfg
            for name in path:
                if name not in node:
                    node[name] = CfgNode()
                node = node[name]
            node[leaf] = copy.deepcopy(declared.default)
