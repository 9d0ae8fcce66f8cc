"""Allocation applied to the heads a config names: the registered class, or its subclass with the
allocation mixin of the detectron2 head it derives from."""
from detectron2.modeling import PROPOSAL_GENERATOR_REGISTRY, ROI_HEADS_REGISTRY, SEM_SEG_HEADS_REGISTRY
from detectron2.modeling.roi_heads import Res5ROIHeads, StandardROIHeads
from detectron2.modeling.meta_arch.semantic_seg import SemSegFPNHead
from detectron2.modeling.proposal_generator import RPN

from ...specs import fail, value_at
from .roi_heads import AllocatedRes5ROIHeads, AllocatedStandardROIHeads, STAROIHeads
from .rpn import STARPN, AllocatedRPN
from .semantic_seg import STASemSegFPNHead, AllocatedSemSegHead

# key -> (its registry, (detectron2 head, allocation mixin for it and its subclasses) ...)
_MIXINS = {
    "MODEL.PROPOSAL_GENERATOR.NAME": (PROPOSAL_GENERATOR_REGISTRY, ((RPN, AllocatedRPN),)),
    "MODEL.ROI_HEADS.NAME": (ROI_HEADS_REGISTRY, ((StandardROIHeads, AllocatedStandardROIHeads),
                                                  (Res5ROIHeads, AllocatedRes5ROIHeads))),
    "MODEL.SEM_SEG_HEAD.NAME": (SEM_SEG_HEADS_REGISTRY, ((SemSegFPNHead, AllocatedSemSegHead),)),
}
_WRAPPED = {StandardROIHeads: STAROIHeads, RPN: STARPN, SemSegFPNHead: STASemSegFPNHead}


def allocating_class(cfg, key: str) -> type:
    """The class to build for the head ``cfg.<key>`` names, with allocation applied
    (:func:`allocating`); fails naming ``key`` for a head that cannot apply allocations."""
    name = value_at(cfg, key)
    try:
        head = _MIXINS[key][0].get(name)
    except KeyError as e:
        fail(key, name, str(e))
    return allocating(head, key)


def allocating(head, kind: str, key: str = None) -> type:
    """``head`` with allocation applied: the class itself if it applies allocations, else its
    subclass with the mixin of the detectron2 head it derives from, registered as ``STA<name>``
    (for StandardROIHeads, RPN, SemSegFPNHead: STAROIHeads, STARPN, STASemSegFPNHead). ``kind``:
    the config key of the head's part (``"MODEL.ROI_HEADS.NAME"``...); fails naming ``key``
    (default ``kind``) for a head no mixin fits."""
    registry, mixins = _MIXINS[kind]
    key = key or kind
    name = getattr(head, "__name__", head)
    bases = " or ".join(base.__name__ for base, _ in mixins)
    if not isinstance(head, type):
        fail(key, name, f"is not a class; sta_d2 applies task allocations to subclasses of {bases}")
    if any(issubclass(head, mixin) for _, mixin in mixins):
        return head
    mixin = next((m for base, m in mixins if issubclass(head, base)), None)
    if mixin is None:
        fail(key, name, f"sta_d2 cannot apply task allocations to it: it derives from none of {bases}, "
             "whose sampling and losses sta_d2 knows (docs/plugging-in.md)")
    if head not in _WRAPPED:
        wrapped_name = f"STA{head.__name__}"
        if wrapped_name in registry:
            fail(key, name, f"its allocating subclass would be registered as {wrapped_name!r}, a name "
                 "already taken")
        _WRAPPED[head] = type(wrapped_name, (mixin, head), {"__doc__": f"{head.__name__} with per-image "
                                                                       f"task allocation ({mixin.__name__})."})
        registry.register(_WRAPPED[head])
    return _WRAPPED[head]
