"""Logging of sta_d2 runs: detectron2's loggers, with a terminal that shows what a user follows.

detectron2's tools log everything both to the terminal and to ``OUTPUT_DIR/log.txt``: before the
first training step come the environment, the config file, the full config (300+ lines) and the
model (200+ lines). :func:`setup_logging` keeps all of that in ``log.txt`` and leaves the
terminal the config and its overrides, the datasets, the policy, progress with its ETA,
evaluation tables, warnings and errors.
"""
import logging
import sys

from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

# (logger, start of the message) of the records only log.txt gets: default_setup's environment,
# arguments and config dumps, the model, the dataset serialisation and the augmentation list
FILE_ONLY = (
    ("detectron2", "Rank of current process"),
    ("detectron2", "Environment info:"),
    ("detectron2", "Command line arguments:"),
    ("detectron2", "Contents of args.config_file="),
    ("detectron2", "Running with full config:"),
    ("detectron2", "Full config saved to"),
    ("detectron2.engine.defaults", "Model:"),
    ("detectron2.data.common", "Serializ"),
    ("detectron2.data.dataset_mapper", "[DatasetMapper] Augmentations used in"),
)
# loggers whose records only log.txt gets: Python warnings (deprecations of detectron2 v0.6's
# dependencies, none the user's to act on) and torch's note, on importing its C++ extension
# support for detectron2's environment dump, that a CPU machine has no CUDA runtime
_TO_FILE = ("py.warnings", "torch.utils.cpp_extension")


class TerminalFilter(logging.Filter):
    """Pass warnings and errors, and information except the dumps of :data:`FILE_ONLY`."""

    def filter(self, record):
        if record.levelno != logging.INFO:
            return record.levelno > logging.INFO
        message = record.getMessage()
        return not any(record.name == name and message.startswith(start) for name, start in FILE_ONLY)


def setup_logging(output_dir=None, *, verbose=False):
    """Set up the ``fvcore``, ``detectron2`` and ``sta_d2`` loggers as detectron2's
    ``default_setup`` does (everything to ``output_dir/log.txt``, or ``log.txt.rank<N>``, and the
    main process's terminal), with a terminal that leaves the dumps to the file unless
    ``verbose``; Python warnings then go to the file only. Call it before ``default_setup``,
    which then finds these loggers set up and logs its dumps through them."""
    rank = comm.get_rank()
    # the calls default_setup makes: setup_logger is memoized on its arguments, so default_setup
    # gets these loggers back instead of adding terminal handlers of its own
    loggers = [setup_logger(output_dir, distributed_rank=rank, name="fvcore"),
               setup_logger(output_dir, distributed_rank=rank),
               setup_logger(output_dir, distributed_rank=rank, name="sta_d2")]
    if verbose:
        return
    for logger in loggers:
        for handler in logger.handlers:
            terminal = getattr(handler, "stream", None) is sys.stdout
            if terminal and not any(isinstance(f, TerminalFilter) for f in handler.filters):
                handler.addFilter(TerminalFilter())
    files = [h for h in loggers[1].handlers if getattr(h, "stream", None) is not sys.stdout]
    if files:
        logging.captureWarnings(True)
        for name in _TO_FILE:
            logger = logging.getLogger(name)
            logger.propagate = False
            for handler in files:
                if handler not in logger.handlers:
                    logger.addHandler(handler)
