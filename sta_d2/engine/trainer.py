"""STATrainer: detectron2's DefaultTrainer with task allocation."""
import logging
import os
import weakref

import torch
from detectron2.data import build_detection_test_loader
from detectron2.engine import DefaultTrainer, TrainerBase, create_ddp_model
from detectron2.engine.hooks import CallbackHook
from detectron2.modeling import META_ARCH_REGISTRY
from detectron2.solver.build import get_default_optimizer_params, maybe_add_gradient_clipping
from detectron2.utils import comm

from ..allocation import build_allocation_policy
from ..data import (DATASET_INDEX_KEY, CheckedDatasetMapper, DenseDatasetMapper, build_stream_train_loader,
                    training_dataset_dicts)
from ..data.train_loader import training_seed
from ..evaluation import build_evaluator
from ..modeling import DenseMultiTaskNet
from ..specs import ConfigKeys, Key, one_of
from ..weighting import build_weighting
from .checkpoint import AtomicCheckpointer
from .hooks import GradientCosineHook
from .train_loop import AllocationTrainer, check_mixed_precision


CONFIG_KEYS = ConfigKeys({
    # "SGD" (detectron2's, with SOLVER.MOMENTUM and NESTEROV) or "ADAM" (used by the dense NYUv2 /
    # Cityscapes settings of the paper).
    "SOLVER.OPTIMIZER": Key("SGD", one_of(("SGD", "ADAM"))),
})


@CONFIG_KEYS.rule("SOLVER.AMP.ENABLED", "MODEL.DEVICE")
def _mixed_precision_device(cfg):
    check_mixed_precision(cfg.SOLVER.AMP.ENABLED, "SOLVER.AMP.ENABLED", cfg.MODEL.DEVICE, "cfg.MODEL.DEVICE")


def _mapper(cfg, is_train):
    """DenseDatasetMapper for dense models; for the others CheckedDatasetMapper (detectron2's
    DatasetMapper, with errors naming broken files)."""
    arch = META_ARCH_REGISTRY.get(cfg.MODEL.META_ARCHITECTURE)
    return (DenseDatasetMapper if issubclass(arch, DenseMultiTaskNet) else CheckedDatasetMapper)(cfg, is_train)


class STATrainer(DefaultTrainer):
    """DefaultTrainer whose inner loop follows ``cfg.STA.POLICY``.

    Differences from DefaultTrainer: the inner loop is :class:`AllocationTrainer`; checkpoints
    hold the optimizer, the allocation state and the data position (DefaultTrainer v0.6 drops the
    optimizer and restarts the data), so ``--resume`` continues exactly, and are written
    atomically; the task losses become gradients through ``cfg.STA.WEIGHTING`` (whose
    own parameters join the optimizer); evaluators come from the dataset's metadata and never
    require CUDA; dense models read their data through :class:`DenseDatasetMapper`;
    ``SOLVER.OPTIMIZER`` may be Adam; ``SOLVER.AMP.ENABLED`` trains in mixed precision on CUDA
    (float16, as AMPTrainer) and on the CPU (bfloat16) with every policy and weighting method
    (:class:`AllocationTrainer`). ``SOLVER.MAX_ITER`` counts optimizer steps for every policy.
    ``cfg`` must be finished and validated (:func:`sta_d2.load_config`, or
    :func:`sta_d2.validate_sta_config` for a config assembled in code).
    """

    def __init__(self, cfg):
        TrainerBase.__init__(self)
        logger = logging.getLogger("sta_d2")
        cfg = self.auto_scale_workers(cfg, comm.get_world_size())
        model = self.build_model(cfg)
        tasks = model.tasks
        optimizer = self.build_optimizer(cfg, model)
        dataset = training_dataset_dicts(cfg, tasks)
        # (dataset index, image id, file name) of the training images, for per-image exports
        self.train_images = [(d[DATASET_INDEX_KEY], d.get("image_id"), d.get("file_name")) for d in dataset]
        weighting = build_weighting(cfg, model, num_images=1 + max(i for i, _, _ in self.train_images))
        weighting = weighting.to(model.device)
        for group in weighting.param_groups(cfg):
            optimizer.add_param_group(group)
        # one seed for the data stream and the per-step random streams, kept in checkpoints
        seed = training_seed(cfg)
        data_loader = self.build_train_loader(cfg, dataset, seed)
        policy = build_allocation_policy(cfg, tasks, comm.get_rank())
        logger.info(f"Allocation policy {cfg.STA.POLICY!r} over tasks {tasks}, "
                    f"{policy.steps_per_batch} optimizer step(s) per batch")
        # A CPU module takes no device_ids (detectron2 passes the local rank, a GPU index).
        on_cpu = model.device.type == "cpu"
        model = create_ddp_model(model, broadcast_buffers=False, **({"device_ids": None} if on_cpu else {}))
        self._trainer = AllocationTrainer(model, data_loader, optimizer, policy, weighting, seed,
                                          amp=cfg.SOLVER.AMP.ENABLED)
        self.scheduler = self.build_lr_scheduler(cfg, optimizer)
        self.checkpointer = AtomicCheckpointer(model, cfg.OUTPUT_DIR, trainer=weakref.proxy(self))
        self.start_iter = 0
        self.max_iter = cfg.SOLVER.MAX_ITER
        self.cfg = cfg
        self.register_hooks(self.build_hooks())

    def build_hooks(self):
        """detectron2's default hooks, plus, for a method with per-image values (ILTP), their
        export to ``OUTPUT_DIR/<method's EXPORT_FILE>`` after training (main process), and with
        ``STA.ANALYSIS.GRAD_COSINE_PERIOD`` > 0 the :class:`GradientCosineHook`."""
        hooks = super().build_hooks()
        weighting = self._trainer.weighting
        if weighting.EXPORT_FILE and comm.is_main_process():
            path = os.path.join(self.cfg.OUTPUT_DIR, weighting.EXPORT_FILE)
            hooks.append(CallbackHook(after_train=lambda trainer: weighting.export(path, trainer.train_images)))
        if self.cfg.STA.ANALYSIS.GRAD_COSINE_PERIOD > 0:
            hooks.append(GradientCosineHook(self.cfg.STA.ANALYSIS.GRAD_COSINE_PERIOD))
        return hooks

    def state_dict(self):
        return {**super().state_dict(), "_trainer": self._trainer.state_dict()}

    def load_state_dict(self, state_dict):
        super().load_state_dict(state_dict)
        if "_trainer" not in state_dict:
            raise KeyError("checkpoint has no optimizer/allocation state ('_trainer'); it was not "
                           "written by STATrainer: load it with MODEL.WEIGHTS instead of --resume")
        self._trainer.load_state_dict(state_dict["_trainer"])

    @classmethod
    def build_train_loader(cls, cfg, dataset=None, seed=None):
        """The resumable training loader (:func:`sta_d2.data.build_stream_train_loader`; the dense
        mapper for dense models, CheckedDatasetMapper otherwise) over ``dataset``, by default
        :func:`sta_d2.data.training_dataset_dicts` (images carry their dataset index), its stream
        drawn from ``seed`` (default: ``cfg.SEED``, or a seed shared by the processes if < 0)."""
        if dataset is None:
            dataset = training_dataset_dicts(cfg)
        if seed is None:
            seed = training_seed(cfg)
        mapper = _mapper(cfg, is_train=True)
        return build_stream_train_loader(cfg, dataset, mapper, seed)

    @classmethod
    def build_test_loader(cls, cfg, dataset_name):
        return build_detection_test_loader(cfg, dataset_name, mapper=_mapper(cfg, is_train=False))

    @classmethod
    def build_optimizer(cls, cfg, model):
        """detectron2's SGD, or Adam when ``cfg.SOLVER.OPTIMIZER == "ADAM"`` (same parameter
        groups, weight decay and gradient clipping as detectron2's)."""
        if cfg.SOLVER.OPTIMIZER == "SGD":
            return super().build_optimizer(cfg, model)
        params = get_default_optimizer_params(
            model,
            base_lr=cfg.SOLVER.BASE_LR,
            weight_decay_norm=cfg.SOLVER.WEIGHT_DECAY_NORM,
            bias_lr_factor=cfg.SOLVER.BIAS_LR_FACTOR,
            weight_decay_bias=cfg.SOLVER.WEIGHT_DECAY_BIAS,
        )
        return maybe_add_gradient_clipping(cfg, torch.optim.Adam)(
            params, lr=cfg.SOLVER.BASE_LR, weight_decay=cfg.SOLVER.WEIGHT_DECAY
        )

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        return build_evaluator(cfg, dataset_name, output_folder)
