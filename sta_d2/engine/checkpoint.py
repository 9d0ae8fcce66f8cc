"""A DetectionCheckpointer whose writes are atomic and whose load errors name the file."""
import os
from contextlib import contextmanager

from detectron2.checkpoint import DetectionCheckpointer


class _AtomicWritePathManager:
    """Wraps a PathManager so that files opened for writing replace their target only when
    closed successfully; a crash while saving leaves the previous file intact."""

    def __init__(self, path_manager):
        self._path_manager = path_manager

    def __getattr__(self, name):
        return getattr(self._path_manager, name)

    @contextmanager
    def open(self, path, mode="r", **kwargs):
        if "w" not in mode:
            with self._path_manager.open(path, mode, **kwargs) as f:
                yield f
            return
        tmp = f"{path}.tmp{os.getpid()}"
        try:
            with open(tmp, mode, **kwargs) as f:
                yield f
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)


class AtomicCheckpointer(DetectionCheckpointer):
    """detectron2's checkpointer with atomic ``save``/``last_checkpoint`` writes.

    A checkpoint that cannot be read (truncated, corrupt) raises an error naming its path
    instead of a bare deserialisation traceback.
    """

    def __init__(self, model, save_dir="", **kwargs):
        super().__init__(model, save_dir, **kwargs)
        self.path_manager = _AtomicWritePathManager(self.path_manager)

    def _load_file(self, filename):
        try:
            return super()._load_file(filename)
        except Exception as e:
            raise RuntimeError(f"cannot read checkpoint {filename!r} (corrupt or truncated?): {e}") from e
