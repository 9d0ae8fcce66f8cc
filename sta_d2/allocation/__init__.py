"""Task allocation: which batch each optimizer step uses and which tasks each image gets."""
from .assignment import TASKS_KEY, TaskAssignment
from .policy import (
    ALLOCATION_POLICY_REGISTRY,
    CONFIG_KEYS,
    AllocationPolicy,
    allocation_generator,
    build_allocation_policy,
    draw_tasks,
    fully_labelled,
    get_policy,
    policy_config_keys,
    policy_names,
)
from .full import FullTaskPolicy
from .stochastic import StochasticPolicy, can_cover
from .interleaved import InterleavedPolicy, ISTAPolicy
