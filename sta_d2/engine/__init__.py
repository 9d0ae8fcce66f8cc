from .checkpoint import AtomicCheckpointer
from .launch import check_device, launch
from .logs import setup_logging
from .train_loop import AUTOCAST_DTYPES, AllocationTrainer, unwrap_model
from .trainer import STATrainer
