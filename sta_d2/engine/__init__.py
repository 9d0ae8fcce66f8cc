from .checkpoint import AtomicCheckpointer
from .launch import check_device, launch
from .logs import setup_logging
from .preflight import check_dataset, check_run, check_weights
from .train_loop import AUTOCAST_DTYPES, AllocationTrainer, unwrap_model
from .trainer import STATrainer
