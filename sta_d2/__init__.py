"""sta_d2: multi-task learning by task allocation (FT, STA, ISTA, STA-Gap) for detectron2.

Importing this package registers every sta_d2 component in detectron2's registries.
"""
from . import allocation, data, evaluation, modeling  # noqa: F401  (registration)
from .config import add_sta_config, load_config, merge_config_file, validate_sta_config
from .specs import STAConfigError
from .engine import STATrainer, setup_logging
from .preflight import check_run

__version__ = "0.1.0"
