"""What task-weighting and gradient methods need from an sta_d2 multi-task model."""
from typing import Dict, List, Sequence, Tuple

import torch
from detectron2.modeling.backbone import FPN
from torch import nn

from ..allocation import TaskAssignment
from .backbone import SegNet


class MultiTaskModel:
    """Mixin of sta_d2's meta-architectures (which have ``self.backbone`` and ``self.tasks``).

    An input has labels for a task when it holds the task's target key (``LABEL_KEYS``, by
    default the task's name): :meth:`task_availability` tells the allocation which tasks it may
    give each image. The backbone is what every task shares: its trainable parameters, its last convolution
    (GradNorm's "last shared layer") and its outputs of the last training forward (the shared
    representation MGDA-UB differentiates) are exposed here.
    """

    LABEL_KEYS: Dict[str, str] = {}  # task -> key of its target in an input dict, if not the task
    #: what a training forward can produce besides its losses, for a weighting method (see
    #: :meth:`request_side_outputs`)
    SIDE_OUTPUTS: Tuple[str, ...] = ()

    def task_availability(self, batched_inputs: List[dict]) -> torch.Tensor:
        """Bool (num_images, num_tasks): which of ``self.tasks`` each input has labels for."""
        rows = [[self.LABEL_KEYS.get(t, t) in x for t in self.tasks] for x in batched_inputs]
        return torch.tensor(rows, dtype=torch.bool).reshape(len(batched_inputs), len(self.tasks))

    def allocation(self, batched_inputs: List[dict]) -> TaskAssignment:
        """The inputs' allocated tasks; allocating a task to an input without its labels fails."""
        assignment = TaskAssignment.from_inputs(batched_inputs, self.tasks)
        unlabelled = (assignment.mask & ~self.task_availability(batched_inputs)).nonzero().tolist()
        if unlabelled:
            i, t = unlabelled[0]
            raise ValueError(f"input {i} ({batched_inputs[i].get('file_name', 'no file name')}) is "
                             f"allocated task {self.tasks[t]!r} but has no {self.tasks[t]!r} labels")
        return assignment

    def request_side_outputs(self, names: Sequence[str]) -> None:
        """From now on, produce the side outputs ``names`` (of :attr:`SIDE_OUTPUTS`) in each
        training forward, for :meth:`side_outputs`. They cost compute, so a model produces only
        what is asked."""
        unknown = set(names) - set(self.SIDE_OUTPUTS)
        if unknown:
            raise ValueError(f"{type(self).__name__} has no side output {sorted(unknown)}; it has {self.SIDE_OUTPUTS}")
        self._requested_side_outputs = tuple(names)

    def wants_side_output(self, name: str) -> bool:
        return name in getattr(self, "_requested_side_outputs", ())

    def side_outputs(self) -> dict:
        """The side outputs of the last training forward, by name."""
        return getattr(self, "_side_outputs", {})

    def track_shared_representation(self):
        """Keep the backbone's outputs of each training forward (call once in ``__init__``)."""
        self._shared_representation: List[torch.Tensor] = []
        self.backbone.register_forward_hook(self._keep_shared_representation)

    def _keep_shared_representation(self, module, inputs, output):
        if self.training:
            self._shared_representation = list(output.values()) if isinstance(output, dict) else [output]

    def shared_representation(self) -> List[torch.Tensor]:
        return self._shared_representation

    def shared_parameters(self) -> List[nn.Parameter]:
        return [p for p in self.backbone.parameters() if p.requires_grad]

    def last_shared_layer(self) -> nn.Parameter:
        """The weight of the backbone's last convolution: SegNet's last decoder conv, the
        finest-level output conv of an FPN, else the last conv registered (ResNet: res5's)."""
        backbone = self.backbone
        if isinstance(backbone, SegNet):
            return backbone.decoder[0][-1].weight
        if isinstance(backbone, FPN):
            return backbone.output_convs[-1].weight
        return [m for m in backbone.modules() if isinstance(m, nn.Conv2d)][-1].weight
