"""Checks of a run's config against this machine, before the run writes anything.

A run writes ``config.yaml``, ``log.txt``, ``metrics.json`` and an event file to ``OUTPUT_DIR``
as it starts (detectron2's ``default_setup`` and writers), before it loads its datasets or its
weights: a mistake found then leaves those files behind, over a finished run's if ``OUTPUT_DIR``
holds one. :func:`check_run` finds such mistakes first: sta_d2's keys
(:func:`sta_d2.validate_sta_config`), the datasets (registered, their files where their
registration says), a local ``MODEL.WEIGHTS`` file and the device; it reports all of them at
once, each with its fix.
"""
import difflib
import os
import re
from typing import List

from detectron2.data import DatasetCatalog, MetadataCatalog

from .config import validate_sta_config
from .data.datasets.dense import missing_data_hint
from .engine.launch import check_device
from .specs import STAConfigError

# metadata under which detectron2's and sta_d2's registrations name a dataset's files
_PATH_KEYS = ("json_file", "image_root", "image_dir", "gt_dir", "sem_seg_root", "panoptic_root",
              "panoptic_json", "dirname", "data_dir")
# sta_d2's datasets that `python -m sta_d2.data.synthetic LAYOUT` writes:
# (name pattern, layout, its folder under the datasets root)
_SYNTHETIC = (
    (r"shapes_(train|val)", "coco", "shapes"),
    (r"nyuv2_13_(train|val|train_extra)", "nyuv2_13", "nyuv2"),
    (r"nyuv2_40_(train|val|train_extra)", "nyud_mt", "NYUD_MT"),
    (r"cityscapes_(depth_seg|fine_inst_sem)_(train|val)", "cityscapes", "cityscapes"),
    (r"cityscapes_npy_(train|val)", "cityscapes_npy", "cityscapes_npy"),
)


def check_run(cfg, *, num_gpus: int = 1, resume: bool = False, eval_only: bool = False) -> None:
    """Raise STAConfigError listing every problem that would stop a run of the finished ``cfg``
    on this machine after it has started writing: invalid sta_d2 keys, datasets of
    ``DATASETS.TRAIN`` (unless ``eval_only``) and ``DATASETS.TEST`` that are not registered or
    whose files are missing, a ``MODEL.WEIGHTS`` path that is no file (unless ``resume`` finds a
    checkpoint in ``OUTPUT_DIR``), a ``MODEL.DEVICE`` that cannot run ``num_gpus`` processes
    per machine. Writes nothing; each problem says how to fix it."""
    problems: List[str] = []
    checks = [lambda: validate_sta_config(cfg), lambda: check_device(cfg.MODEL.DEVICE, num_gpus)]
    splits = (("DATASETS.TEST",) if eval_only else ("DATASETS.TRAIN", "DATASETS.TEST"))
    for key in splits:
        for name in cfg.DATASETS[key.split(".")[1]]:
            checks.append(lambda key=key, name=name: check_dataset(name, f"cfg.{key}"))
    if not (resume and os.path.isfile(os.path.join(cfg.OUTPUT_DIR, "last_checkpoint"))):
        checks.append(lambda: check_weights(cfg.MODEL.WEIGHTS))
    for check in checks:
        try:
            check()
        except STAConfigError as e:
            problems.append(str(e))
    if len(problems) == 1:
        raise STAConfigError(problems[0])
    if problems:
        raise STAConfigError(f"{len(problems)} problems:\n" + "\n".join(f"- {p}" for p in problems))


def check_dataset(name: str, where: str = "cfg.DATASETS.TRAIN") -> None:
    """Raise STAConfigError when ``name`` (given by ``where``) is not a registered dataset,
    suggesting the closest registered names, or when a file or folder its metadata names is
    missing, saying where datasets are read and, for sta_d2's own, how to generate them."""
    if name not in DatasetCatalog:
        close = [repr(c) for c in difflib.get_close_matches(name, DatasetCatalog.list(), n=3, cutoff=0.6)]
        guess = (f"did you mean {close[0]}?" + (f" (or {', '.join(close[1:])})" if close[1:] else "")
                 if close else "no registered name is close to it;")
        raise STAConfigError(
            f"{where}: {name!r} is not a registered dataset; {guess} datasets/README.md lists "
            "sta_d2's; register a COCO-format file of your own with --coco-dataset NAME JSON "
            "IMAGE_ROOT (tools/train_net.py) or sta_d2.data.datasets.register_coco_instances_checked")
    metadata = MetadataCatalog.get(name)
    for path_key in _PATH_KEYS:
        path = metadata.get(path_key, None)
        if isinstance(path, str) and path and "://" not in path and not os.path.exists(path):
            raise STAConfigError(f"{where}: dataset {name!r} reads {path}, which does not exist; "
                                 f"{_missing_files_hint(name, path)}")


def _missing_files_hint(name: str, path: str) -> str:
    root = os.path.expanduser(os.getenv("DETECTRON2_DATASETS", "datasets"))
    for pattern, layout, folder in _SYNTHETIC:
        if re.fullmatch(pattern, name):
            extra = " --num-train-extra N" if name.endswith("_extra") else ""
            return missing_data_hint(os.path.join(root, folder), layout, extra)
    if os.path.abspath(path).startswith(os.path.abspath(root) + os.sep):
        top = os.path.relpath(os.path.abspath(path), os.path.abspath(root)).split(os.sep)[0]
        return missing_data_hint(os.path.join(root, top))
    return "check the paths it was registered with"


def check_weights(weights: str) -> None:
    """Raise STAConfigError when ``MODEL.WEIGHTS`` is a local path that is no file (a URL, e.g.
    ``detectron2://...``, is fetched when the model loads)."""
    if weights and "://" not in weights and not os.path.isfile(weights):
        raise STAConfigError(
            f"cfg.MODEL.WEIGHTS = {weights!r}: no such file; give a checkpoint (e.g. the "
            "model_final.pth of a finished run's OUTPUT_DIR), a detectron2:// or https:// URL, or "
            "'' to start from scratch")
