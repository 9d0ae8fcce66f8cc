from .checkpoint import AtomicCheckpointer
from .launch import launch
from .train_loop import AllocationTrainer, unwrap_model
from .trainer import STATrainer
