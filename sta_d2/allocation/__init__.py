from .assignment import TASKS_KEY, TaskAssignment
from .policies import (
    POLICIES,
    AllocationPolicy,
    FullTaskPolicy,
    InterleavedPolicy,
    ISTAPolicy,
    StochasticPolicy,
    allocation_generator,
    can_cover,
    fully_labelled,
    build_allocation_policy,
    draw_tasks,
    register_policy,
)
