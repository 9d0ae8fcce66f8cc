"""Hostile configs: every key sta_d2 owns is checked when the config is validated, and random
values for random sets of them give either a working build or an STAConfigError naming a key that
was changed, never an error from deep inside."""
import re

import pytest
from detectron2.config import CfgNode, get_cfg
from detectron2.modeling import build_model
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from conftest import dense_cfg, tiny_rcnn_cfg
from sta_d2 import STAConfigError, add_sta_config, validate_sta_config
from sta_d2.allocation import build_allocation_policy, policy_names
from sta_d2.config import owned_keys
from sta_d2.data import DenseDatasetMapper
from sta_d2.data.partial_labels import MODES
from sta_d2.dense_tasks import dense_task_names, get_dense_task
from sta_d2.modeling import DENSE_HEAD_REGISTRY
from sta_d2.weighting import WEIGHTING_REGISTRY, build_weighting
from sta_d2.specs import NORMS
from sta_d2.weighting.mgda import NORMALIZATIONS

KEYS = sorted(owned_keys())
MODEL_KEYS = [k for k in KEYS if k.startswith("MODEL.")]
# Keys whose value is a layer width, depth or class count: a huge valid one is a legal config
# that costs memory, not a config error, so they are only given small integers.
SIZE_KEYS = {"MODEL.DENSE.NUM_CLASSES", "MODEL.DENSE.HEAD_CHANNELS", "MODEL.SEGNET.WIDTHS",
             "MODEL.SEGNET.NUM_CONVS", "STA.WEIGHTING.JTR.CHANNELS", "STA.WEIGHTING.JTR.LATENT_CHANNELS"}
DENSE_TASKS = dense_task_names()
METRICS = [f"{task}/{metric}" for task in DENSE_TASKS for metric in get_dense_task(task).METRICS]
# Every name some key accepts, and some it does not.
NAMES = sorted({*policy_names(), *(name for name, _ in WEIGHTING_REGISTRY), *DENSE_TASKS, "det", "mask",
                *(name for name, _ in DENSE_HEAD_REGISTRY), *NORMS, "SGD", "ADAM", *MODES, *NORMALIZATIONS,
                *METRICS, "res4", "res5", "segnet", "depth/", "/mIoU", "none ", "bn"})
FUZZ = settings(deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
NAMED_KEY = re.compile(r"cfg\.([A-Z][A-Z0-9_]*(?:\.[A-Z][A-Z0-9_]*)*)")


def values(huge: bool):
    """Any value a config key might be set to: wrong types, out-of-range, NaN, infinite, huge
    (``huge``) and negative numbers, empty and mixed lists, dicts, random strings, and valid
    values."""
    ints = st.integers(-3, 40) | st.sampled_from([-2 ** 63 - 1, -10 ** 30])
    if huge:
        ints = ints | st.sampled_from([2 ** 31, 2 ** 63, 2 ** 64, 10 ** 30])
    scalars = (st.none() | st.booleans() | ints | st.floats() | st.floats(0, 3) | st.text(max_size=6)
               | st.sampled_from(NAMES))
    return (scalars
            | st.dictionaries(st.text(max_size=3), scalars, max_size=2)
            | st.lists(scalars, max_size=4)
            | st.lists(ints, max_size=4)
            | st.lists(st.floats(0, 2), max_size=3)
            | st.lists(st.sampled_from(NAMES), max_size=3)
            | st.lists(st.sampled_from(DENSE_TASKS), min_size=1, unique=True)
            | st.lists(st.sampled_from(METRICS), max_size=2, unique=True))


HUGE, SMALL = values(huge=True), values(huge=False)
NAN, INF = float("nan"), float("inf")
# Settings, plausible and tricky. A key's "valid" draws are those its spec accepts: most build,
# and a spec that lets through what it should not (8.0 for 8, two ASPP dilations) ends deep in
# the build, which fails the test.
CANDIDATES = [*range(-1, 41), 64, 256, 0.0, 1e-3, 0.5, 1.0, 1.5, 2.0, 8.0, 16.0, -1.0, NAN, INF, True,
              False, None, "", "8", *NAMES, [], (), [None], [0], [1], [1.5], [NAN], [INF, 1.0], [True],
              [8, 16], (8, 16), [8.0, 16.0], [16, 32, 64], [32, 64], [1, 2], [0, 2, 4], [True, 2, 4],
              [2, 4, 6], [6, 12], [2, 4, 6, 8], [12, 24, 36], [0.5, 1.0], [1.0, 1.25], [1.0], [1.0, 0.0],
              [24, 40], [24.0, 40.0], ["sem_seg", "depth"], ["depth", "sem_seg"], ["depth", "depth"],
              ["sem_seg", 3], ["det", "mask"], ["sem_seg"], ["depth", "normal", "sem_seg"],
              ["depth/abs_err", "sem_seg/mIoU"]]


def accepted(spec):
    """The CANDIDATES ``spec`` accepts, grouped by type (of the entries too, for lists) and each
    group drawn as often, so that a float or a list of floats is as likely as an integer."""
    groups = {}
    for v in filter(spec.accepts, CANDIDATES):
        entries = frozenset(map(type, v)) if isinstance(v, (list, tuple)) else None
        groups.setdefault((type(v), entries), []).append(v)
    return st.one_of([st.sampled_from(group) for group in groups.values()])


ACCEPTED = {name: accepted(key.spec) for name, key in owned_keys().items()}


def set_key(cfg, key, value):
    *nodes, leaf = key.split(".")
    node = cfg
    for name in nodes:
        node = node[name]
    node[leaf] = value


def build_everything(cfg):
    """What STATrainer builds from the config, but the data: validation, model, allocation policy,
    weighting method (fitted to the model) and, for dense models, the data mapper."""
    validate_sta_config(cfg)
    model = build_model(cfg)
    build_allocation_policy(cfg, model.tasks, rank=0)
    build_weighting(cfg, model, num_images=4).param_groups(cfg)
    if cfg.MODEL.META_ARCHITECTURE == "DenseMultiTaskNet":
        DenseDatasetMapper(cfg, is_train=True)


def builds_or_names_a_changed_key(cfg, changed):
    """Build everything from ``cfg``; an STAConfigError must name one of the ``changed`` keys."""
    try:
        build_everything(cfg)
        event("built")
    except STAConfigError as e:
        event("refused")
        named = set(NAMED_KEY.findall(str(e)))
        assert named & changed, f"{e!r} names none of the changed keys {sorted(changed)}"


def draw_value(data, key):
    """A hostile value (one draw in four) or one of the CANDIDATES the key's spec accepts."""
    if data.draw(st.integers(0, 3), label=f"{key} is hostile") == 0:
        return data.draw(SMALL if key in SIZE_KEYS else HUGE, label=key)
    return data.draw(ACCEPTED[key], label=key)


def fuzz(make_cfg, data, keys=KEYS, always=()):
    """Set the keys ``always`` and a few random ones of ``keys`` to random values, then the
    hyper-parameters of the weighting method the config selects (they matter once it is
    selected), and build."""
    cfg = make_cfg()
    drawn = data.draw(st.lists(st.sampled_from(keys), max_size=3, unique=True), label="keys") if keys else ()
    changed = set()
    for key in dict.fromkeys([*always, *drawn]):
        set_key(cfg, key, draw_value(data, key))
        changed.add(key)
    name = cfg.STA.WEIGHTING.NAME
    if isinstance(name, str) and name in dict(WEIGHTING_REGISTRY):
        method = WEIGHTING_REGISTRY.get(name)
        for key in (f"STA.WEIGHTING.{method.CONFIG_NAME}.{k}" for k in method.CONFIG):
            set_key(cfg, key, draw_value(data, key))
            changed.add(key)
    builds_or_names_a_changed_key(cfg, changed)


@pytest.mark.slow
@pytest.mark.parametrize("keys, always", [
    (KEYS, ("MODEL.DENSE.HEAD_NAME", "STA.WEIGHTING.NAME")),
    (MODEL_KEYS, ("MODEL.DENSE.HEAD_NAME",)),
    ((), ("STA.WEIGHTING.NAME",)),
], ids=["all-keys", "model-keys", "weighting"])
@settings(FUZZ, max_examples=250)
@given(data=st.data())
def test_random_values_on_a_dense_segnet_config(keys, always, data):
    fuzz(lambda: dense_cfg("segnet"), data, keys, always)


@pytest.mark.slow
@settings(FUZZ, max_examples=30)
@given(st.data())
def test_random_values_on_a_dense_resnet_config(data):
    fuzz(lambda: dense_cfg("resnet", tasks=("sem_seg", "depth")), data, always=("STA.WEIGHTING.NAME",))


@pytest.mark.slow
@settings(FUZZ, max_examples=40)
@given(st.data())
def test_random_values_on_a_mask_rcnn_config(data):
    fuzz(tiny_rcnn_cfg, data, always=("STA.WEIGHTING.NAME",))


def _leaves(node, prefix=""):
    for key, value in node.items():
        if isinstance(value, CfgNode):
            yield from _leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def test_every_owned_key_has_a_spec_that_accepts_its_default():
    stock = dict(_leaves(get_cfg()))
    cfg = get_cfg()
    add_sta_config(cfg)
    owned = {key: value for key, value in _leaves(cfg) if key not in stock}
    keys = owned_keys()
    assert set(owned) == set(keys)
    assert all(keys[name].spec.accepts(value) for name, value in owned.items())


@pytest.mark.parametrize("key", KEYS)
def test_every_owned_key_is_validated(key):
    cfg = dense_cfg("segnet")
    set_key(cfg, key, None)
    with pytest.raises(STAConfigError, match=re.escape(f"cfg.{key} = None: must be ")):
        validate_sta_config(cfg)


@pytest.mark.parametrize("key, value", [
    ("STA.GAP", True),  # a bool is no integer
    ("STA.COVER_ALL_TASKS", 1),  # nor an integer a bool
    ("MODEL.RESNETS.OUTPUT_STRIDE", 8.0),
    ("STA.WEIGHTING.MGDA.ITERATIONS", 10.0),
    ("STA.WEIGHTING.DWA.TEMPERATURE", float("nan")),
    ("STA.WEIGHTING.ILTP.LR", float("inf")),
    ("STA.WEIGHTING.UW.INIT_LOG_VAR", "0"),
    ("STA.WEIGHTING.ILTP.INIT", 1e38),  # no float32 log-variance: exp(-s) would be 0
    ("STA.WEIGHTING.STATIC.WEIGHTS", [1.0, 1e39]),  # inf in float32
    ("STA.WEIGHTING.PCGRAD.SEED", 2 ** 64),  # beyond torch.Generator's seeds
    ("MODEL.DENSE.ASPP_DILATIONS", [6, 12]),  # detectron2's ASPP asserts 3
    ("INPUT.DENSE.SIZE", [32.0, 48.0]),
    ("INPUT.DENSE.RANDOM_SCALE", []),
    ("TEST.DENSE.DELTA_M_METRICS", ["depth"]),
])
def test_values_of_the_wrong_type_or_range_are_refused(key, value):
    cfg = dense_cfg("segnet")
    set_key(cfg, key, value)
    with pytest.raises(STAConfigError, match=re.escape(f"cfg.{key} = {value!r}: must be ")):
        validate_sta_config(cfg)


@pytest.mark.parametrize("settings_, key, also", [
    ({"STA.POLICY": "ista", "STA.TASKS": ["sem_seg", "depth"], "STA.TASKS_PER_IMAGE": 3},
     "STA.TASKS_PER_IMAGE", "STA.TASKS"),
    ({"STA.PARTIAL_LABELS.MODE": "fraction"}, "STA.PARTIAL_LABELS.FRACTIONS", "STA.PARTIAL_LABELS.MODE"),
    ({"STA.PARTIAL_LABELS.FRACTIONS": [0.5, 1.0]}, "STA.PARTIAL_LABELS.FRACTIONS", "STA.PARTIAL_LABELS.MODE"),
    ({"STA.PARTIAL_LABELS.MODE": "fraction", "STA.PARTIAL_LABELS.FRACTIONS": [0.5],
      "MODEL.DENSE.TASKS": ["sem_seg", "depth"], "STA.TASKS": ["sem_seg", "depth"]},
     "STA.PARTIAL_LABELS.FRACTIONS", "STA.TASKS"),
    ({"MODEL.DENSE.NUM_CLASSES": 300}, "MODEL.DENSE.IGNORE_VALUE", "MODEL.DENSE.NUM_CLASSES"),
    ({"MODEL.DENSE.HEAD_NORM": "GN", "MODEL.DENSE.HEAD_CHANNELS": 48}, "MODEL.DENSE.HEAD_CHANNELS",
     "MODEL.DENSE.HEAD_NORM"),
    ({"MODEL.SEGNET.NORM": "GN"}, "MODEL.SEGNET.WIDTHS", "MODEL.SEGNET.NORM"),
    ({"MODEL.SEGNET.NUM_CONVS": [1, 1, 1]}, "MODEL.SEGNET.NUM_CONVS", "MODEL.SEGNET.WIDTHS"),
    ({"TEST.DENSE.DELTA_M_METRICS": ["depth/abs_err"]}, "TEST.DENSE.DELTA_M_METRICS",
     "TEST.DENSE.BASELINES"),
])
def test_combinations_that_make_no_sense_name_both_keys(settings_, key, also):
    cfg = dense_cfg("segnet")
    for k, value in settings_.items():
        set_key(cfg, k, value)
    with pytest.raises(STAConfigError, match=rf"^cfg\.{re.escape(key)} = .*cfg\.{re.escape(also)}\b"):
        validate_sta_config(cfg)


def test_ista_with_more_tasks_per_image_than_the_model_has_fails_at_validation():
    cfg = dense_cfg("segnet", tasks=("sem_seg", "depth"))
    cfg.STA.POLICY, cfg.STA.TASKS_PER_IMAGE = "ista", 3
    with pytest.raises(STAConfigError, match=r"^cfg\.STA\.TASKS_PER_IMAGE = 3: exceeds"):
        validate_sta_config(cfg)  # STA.TASKS empty: the model's tasks decide, before any build
    cfg.STA.TASKS_PER_IMAGE = 2
    build_everything(cfg)


@pytest.mark.parametrize("key, value", [
    ("MODEL.SEGNET.NUM_CONVS", [1]),
    ("MODEL.SEGNET.WIDTHS", 8),
    ("MODEL.DENSE.TASKS", "depth"),
    ("MODEL.DENSE.HEAD_NAME", "Nope"),
    ("MODEL.DENSE.ASPP_DILATIONS", [1, 2]),
])
def test_values_that_would_fail_deep_in_a_build_are_refused_by_validation(key, value):
    cfg = dense_cfg("segnet")
    set_key(cfg, key, value)
    with pytest.raises(STAConfigError, match=re.escape(f"cfg.{key} =")):
        validate_sta_config(cfg)


@pytest.mark.parametrize("key, value", [("INPUT.DENSE.SIZE", 32), ("INPUT.DENSE.RANDOM_SCALE", 1.5)])
def test_mapper_values_are_refused_by_validation(key, value):
    cfg = dense_cfg("segnet")
    set_key(cfg, key, value)
    with pytest.raises(STAConfigError, match=re.escape(f"cfg.{key} = {value!r}")):
        validate_sta_config(cfg)
