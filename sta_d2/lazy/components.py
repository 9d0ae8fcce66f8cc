"""sta_d2's builders with explicit arguments, to call from a LazyConfig (``LazyCall``).

sta_d2's own settings stay sta_d2's config keys: a LazyConfig holds them as ``sta``, a dict shaped
like the ``STA`` node of a yacs config (``sta = dict(POLICY="ista", WEIGHTING=dict(NAME="uw"))``),
checked by :func:`sta_config` against the same specs."""
import os
from typing import Optional, Sequence

from detectron2.config import CfgNode, get_cfg
from detectron2.utils import comm
from omegaconf import DictConfig, OmegaConf

from ..allocation import build_allocation_policy
from ..config import add_sta_config, owned_keys
from ..data import DATASET_INDEX_KEY, build_stream_train_loader
from ..evaluation import build_evaluator
from ..specs import fail, value_at
from ..weighting import build_weighting
from ..weighting.base import CONFIG_KEYS as weighting_keys


def sta_config(sta: Optional[dict] = None, **keys) -> CfgNode:
    """A detectron2 config with sta_d2's keys, ``sta`` merged into its ``STA`` node, every ``STA``
    key checked against its spec, and the weighting method's rules; ``keys``: other top-level nodes
    to merge (``SOLVER=dict(...)``). ``STA.TASKS`` and ``STA.PARTIAL_LABELS`` are yacs-only: the
    tasks' order is :func:`allocating_model`'s ``tasks``."""
    cfg = get_cfg()
    add_sta_config(cfg)
    nodes = {"STA": sta or {}, **keys}
    nodes = {k: OmegaConf.to_container(v, resolve=True) if isinstance(v, DictConfig) else v for k, v in nodes.items()}
    cfg.merge_from_other_cfg(CfgNode(nodes))
    for name, key in owned_keys().items():
        if name.startswith("STA."):
            key.spec.check(name, value_at(cfg, name))
    for name in ("STA.TASKS", "STA.PARTIAL_LABELS.MODE"):
        if value_at(cfg, name):
            fail(name, value_at(cfg, name), "is not supported in a LazyConfig's sta (docs/plugging-in.md)")
    for _, rule in weighting_keys.rules:
        rule(cfg)
    return cfg


def allocation_policy(sta: Optional[dict], tasks: Sequence[str]):
    """The policy ``sta["POLICY"]`` over ``tasks`` for this process (:func:`build_allocation_policy`)."""
    return build_allocation_policy(sta_config(sta), tasks, comm.get_rank())


def task_weighting(sta: Optional[dict], model, num_images: int, base_lr: float = 0.0):
    """The weighting method ``sta["WEIGHTING"]["NAME"]`` for ``model`` (:func:`build_weighting`);
    ``base_lr``: the learning rate of its own parameters unless ``sta["WEIGHTING"]["LR"]``."""
    return build_weighting(sta_config(sta, SOLVER={"BASE_LR": base_lr}), model, num_images)


def stream_train_loader(dataset: list, mapper, total_batch_size: int, seed: int, num_workers: int = 0,
                        aspect_ratio_grouping: bool = True, sampler: str = "TrainingSampler",
                        repeat_threshold: float = 0.0):
    """The resumable training loader (:func:`sta_d2.data.build_stream_train_loader`) over the dataset
    dicts ``dataset``, which are numbered in order unless they carry their dataset index."""
    for index, record in enumerate(dataset):
        record.setdefault(DATASET_INDEX_KEY, index)
    cfg = CfgNode({"SOLVER": {"IMS_PER_BATCH": total_batch_size},
                   "DATALOADER": {"NUM_WORKERS": num_workers, "ASPECT_RATIO_GROUPING": aspect_ratio_grouping,
                                  "SAMPLER_TRAIN": sampler, "REPEAT_THRESHOLD": repeat_threshold}})
    return build_stream_train_loader(cfg, dataset, mapper, seed)


def evaluator(dataset_name: str, output_dir: str, sta: Optional[dict] = None):
    """sta_d2's evaluator(s) for the dataset's ``evaluator_type`` (:func:`build_evaluator`; no CUDA
    needed), writing to ``output_dir/inference``."""
    cfg = sta_config(sta)
    cfg.OUTPUT_DIR = output_dir
    return build_evaluator(cfg, dataset_name, os.path.join(output_dir, "inference"))
