"""Pure-Python stand-in for ``detectron2._C`` when detectron2 is installed without its C++ ops.

sta_d2's bootstrap installs detectron2 v0.6 from the ``pb1-detectron2`` sdist, which lacks the
C++ sources. Several detectron2 modules import ``_C`` at import time, and ``collect_env`` queries
it, so this module answers those queries. Every compiled operator (deformable convolution,
rotated boxes, fast COCO evaluation, ...) raises a RuntimeError that says what is missing.
Standard Mask R-CNN and Panoptic FPN need none of them: ROIAlign and NMS come from torchvision.
"""

_MISSING = (
    "detectron2 was installed by sta_d2's bootstrap without its compiled C++/CUDA ops, so "
    "'detectron2._C.{name}' is unavailable. Models that need deformable convolution or rotated "
    "boxes, and COCOEvaluator(use_fast_impl=True), require detectron2 built from source."
)


def get_compiler_version():
    return "not compiled (sta_d2 pure-Python detectron2._C)"


def get_cuda_version():
    return "not compiled"


def has_cuda():
    return False


def __getattr__(name):
    if name.startswith("__"):
        raise AttributeError(name)
    raise RuntimeError(_MISSING.format(name=name))
