from .assignment import TaskAssignment
from .policy import ALLOCATION_POLICY_REGISTRY, AllocationPolicy


@ALLOCATION_POLICY_REGISTRY.register()
class FullTaskPolicy(AllocationPolicy):
    """Every task on every image (FT): stock multi-task training."""

    name = "full"

    def next_step(self, next_batch, availability=None):
        batch = next_batch()
        return batch, TaskAssignment(self.tasks, self._availability(batch, availability))
