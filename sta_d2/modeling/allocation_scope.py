"""How a batch's task allocation reaches the heads during one forward pass.

The meta-architecture reads the allocation from its inputs and opens :func:`allocation_scope`
around detectron2's own ``forward``; allocation-aware heads read it with
:func:`allocated_images`. Outside a scope (inference, stock training) heads behave as in
detectron2.
"""
from contextlib import contextmanager
from contextvars import ContextVar
from typing import List, Optional

from ..allocation import TaskAssignment

_CURRENT: ContextVar[Optional[TaskAssignment]] = ContextVar("sta_d2_allocation", default=None)


@contextmanager
def allocation_scope(assignment: TaskAssignment):
    token = _CURRENT.set(assignment)
    try:
        yield assignment
    finally:
        _CURRENT.reset(token)


def allocated_images(task: str) -> Optional[List[int]]:
    """Images allocated ``task`` in the current batch, or None when every image has it."""
    assignment = _CURRENT.get()
    if assignment is None or assignment.covers_all(task):
        return None
    return assignment.images(task)
