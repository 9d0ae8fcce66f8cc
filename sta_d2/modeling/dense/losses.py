"""Per-task dense losses: means over the valid pixels of the images they are given, either over
the whole sub-batch (the task loss) or per image (for per-instance methods such as ILTP).

Each returns an exact, graph-connected zero where no pixel is valid (never NaN), so an image with
only ignored pixels, or a batch without labels for a task, is safe.
"""
import torch
import torch.nn.functional as F


def _masked_mean(values: torch.Tensor, valid: torch.Tensor, prediction: torch.Tensor,
                 per_image: bool) -> torch.Tensor:
    """Mean of ``values`` (N, H, W) over ``valid`` pixels: a scalar, or (N,) when ``per_image``."""
    if per_image:
        counts = valid.flatten(1).sum(dim=1)
        sums = (values * valid).flatten(1).sum(dim=1)
        return torch.where(counts > 0, sums / counts.clamp_min(1), prediction.sum() * 0.0)
    count = valid.sum()
    if count == 0:
        return prediction.sum() * 0.0
    return values[valid].sum() / count


def segmentation_loss(prediction, target, ignore_value, per_image=False):
    """Cross-entropy averaged over pixels whose label is not ``ignore_value``."""
    valid = target != ignore_value
    per_pixel = F.cross_entropy(prediction, target.clamp_min(0) * valid, reduction="none")
    return _masked_mean(per_pixel, valid, prediction, per_image)


def l1_loss(prediction, target, per_image=False):
    """L1 over pixels with a positive, finite target (depth or disparity; 0 = invalid)."""
    valid = (torch.isfinite(target) & (target > 0)).squeeze(1)
    return _masked_mean((prediction - target.nan_to_num()).abs().squeeze(1), valid, prediction, per_image)


def cosine_loss(prediction, target, per_image=False):
    """1 - cos(angle) between the normalised prediction and the target normal, over pixels with a
    non-zero target."""
    valid = target.abs().sum(dim=1) > 0
    cosine = (F.normalize(prediction, dim=1) * target).sum(dim=1)
    return _masked_mean(1.0 - cosine, valid, prediction, per_image)
