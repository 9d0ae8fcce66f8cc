"""Training and evaluating a LazyConfig with task allocation (``tools/lazyconfig_train_net.py``).

The LazyConfig is detectron2's (``model``, ``dataloader``, ``optimizer``, ``lr_multiplier``,
``train``), its model made by :func:`allocating_model`, plus ``sta``: sta_d2's keys
(:mod:`sta_d2.lazy.components`). The loop is :class:`sta_d2.engine.AllocationTrainer`, as for
yacs configs: checkpoints hold the optimizer, the allocation, the weighting method and the data
position, so resuming continues exactly, and are written atomically; a non-finite loss stops
training, naming the task, before the optimizer steps; ``train.amp.enabled`` is honoured."""
import logging

from detectron2.config import instantiate
from detectron2.engine import create_ddp_model, hooks
from detectron2.engine.defaults import default_writers
from detectron2.evaluation import inference_on_dataset, print_csv_format
from detectron2.utils import comm

from ..allocation import build_allocation_policy
from ..data import DATASET_INDEX_KEY
from ..engine import AllocationTrainer, AtomicCheckpointer
from ..engine.train_loop import check_mixed_precision
from ..weighting import build_weighting
from .components import sta_config, stream_train_loader

logger = logging.getLogger("sta_d2")


def _ddp(model, cfg):
    # A CPU module takes no device_ids (detectron2 passes the local rank, a GPU index).
    on_cpu = next(model.parameters()).device.type == "cpu"
    return create_ddp_model(model, **cfg.train.ddp, **({"device_ids": None} if on_cpu else {}))


def build_lazy_trainer(cfg):
    """The :class:`AllocationTrainer` of LazyConfig ``cfg`` with detectron2's LazyConfig training
    hooks, and its :class:`AtomicCheckpointer` (``cfg.train.output_dir``). The training loader is
    :func:`stream_train_loader` over ``cfg.dataloader.train``'s dataset, mapper, batch size and
    workers; ``cfg.train.seed`` (negative or absent: one shared random seed) seeds it and the
    per-step random streams; ``cfg.train.amp.enabled`` trains in mixed precision, as detectron2's
    lazyconfig_train_net.py does with AMPTrainer (float16 on CUDA, bfloat16 on the CPU)."""
    check_mixed_precision(cfg.train.amp.enabled, "train.amp.enabled", cfg.train.device, "cfg.train.device")
    sta = sta_config(cfg.get("sta"), SOLVER={"BASE_LR": float(cfg.optimizer.lr)})
    model = instantiate(cfg.model).to(cfg.train.device)
    seed = cfg.train.get("seed", -1)
    seed = seed if seed >= 0 else comm.shared_random_seed()
    train = cfg.dataloader.train
    dataset = instantiate(train.dataset)
    loader = stream_train_loader(dataset, instantiate(train.mapper), train.total_batch_size, seed,
                                 train.get("num_workers", 0), train.get("aspect_ratio_grouping", True))
    num_images = 1 + max(d[DATASET_INDEX_KEY] for d in dataset)
    weighting = build_weighting(sta, model, num_images).to(model.device)
    cfg.optimizer.params.model = model
    optimizer = instantiate(cfg.optimizer)
    for group in weighting.param_groups(sta):
        optimizer.add_param_group(group)
    policy = build_allocation_policy(sta, model.tasks, comm.get_rank())
    logger.info(f"Allocation policy {sta.STA.POLICY!r} over tasks {model.tasks}, "
                f"{policy.steps_per_batch} optimizer step(s) per batch")
    model = _ddp(model, cfg)
    trainer = AllocationTrainer(model, loader, optimizer, policy, weighting, seed, amp=cfg.train.amp.enabled)
    checkpointer = AtomicCheckpointer(model, cfg.train.output_dir, trainer=trainer)
    main = comm.is_main_process()
    trainer.register_hooks([
        hooks.IterationTimer(),
        hooks.LRScheduler(scheduler=instantiate(cfg.lr_multiplier)),
        hooks.PeriodicCheckpointer(checkpointer, **cfg.train.checkpointer) if main else None,
        hooks.EvalHook(cfg.train.eval_period, lambda: evaluate(cfg, model)),
        hooks.PeriodicWriter(default_writers(cfg.train.output_dir, cfg.train.max_iter),
                             period=cfg.train.log_period) if main else None,
    ])
    return trainer, checkpointer


def train(cfg, resume: bool = False):
    """Train LazyConfig ``cfg`` (see :func:`build_lazy_trainer`): from ``cfg.train.init_checkpoint``,
    or, with ``resume`` and a checkpoint in ``cfg.train.output_dir``, from where it stopped."""
    trainer, checkpointer = build_lazy_trainer(cfg)
    checkpointer.resume_or_load(cfg.train.init_checkpoint, resume=resume)
    start_iter = trainer.iter + 1 if resume and checkpointer.has_checkpoint() else 0
    trainer.train(start_iter, cfg.train.max_iter)
    return trainer


def evaluate(cfg, model):
    """``cfg.dataloader.evaluator`` on ``cfg.dataloader.test`` ({} without them)."""
    if cfg.dataloader.get("evaluator") is None or cfg.dataloader.get("test") is None:
        return {}
    results = inference_on_dataset(model, instantiate(cfg.dataloader.test), instantiate(cfg.dataloader.evaluator))
    print_csv_format(results)
    return results


def evaluate_checkpoint(cfg, resume: bool = False):
    """:func:`evaluate` the model of ``cfg`` with the weights of ``cfg.train.init_checkpoint`` (with
    ``resume``, of the last checkpoint in ``cfg.train.output_dir`` if there is one)."""
    model = instantiate(cfg.model).to(cfg.train.device)
    model = _ddp(model, cfg)
    AtomicCheckpointer(model, cfg.train.output_dir).resume_or_load(cfg.train.init_checkpoint, resume=resume)
    return evaluate(cfg, model)
