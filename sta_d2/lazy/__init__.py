"""sta_d2 from detectron2's LazyConfig: models with allocation, the policy, the weighting method,
the stream loader, evaluators, and the training loop of ``tools/lazyconfig_train_net.py``."""
from .components import allocation_policy, evaluator, sta_config, stream_train_loader, task_weighting
from .model import allocating_model
from .trainer import build_lazy_trainer, evaluate, evaluate_checkpoint, train
