from .checkpoint import AtomicCheckpointer
from .train_loop import AllocationTrainer, unwrap_model
from .trainer import STATrainer
