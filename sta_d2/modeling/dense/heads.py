"""Per-task prediction heads of the dense models, selected by ``cfg.MODEL.DENSE.HEAD_NAME``."""
import fvcore.nn.weight_init as weight_init
import torch.nn.functional as F
from detectron2.layers import ASPP, Conv2d, get_norm
from detectron2.utils.registry import Registry
from torch import nn

from ...specs import GROUP_NORM_GROUPS, NORMS, ConfigKeys, Key, fail, integer, list_of, one_of, registered

DENSE_HEAD_REGISTRY = Registry("DENSE_HEAD")
DENSE_HEAD_REGISTRY.__doc__ = "Heads of DenseMultiTaskNet: (cfg, in_channels, out_channels) -> nn.Module."

CONFIG_KEYS = ConfigKeys({
    # The head of every task: "ASPPHead" (DeepLab-style) or "SegNetHead" (any head registered in
    # DENSE_HEAD_REGISTRY).
    "MODEL.DENSE.HEAD_NAME": Key("ASPPHead", registered(DENSE_HEAD_REGISTRY)),
    # Channels of ASPPHead's layers.
    "MODEL.DENSE.HEAD_CHANNELS": Key(256, integer(1)),
    # Dilations of ASPPHead's three atrous convolutions (detectron2's ASPP takes 3).
    "MODEL.DENSE.ASPP_DILATIONS": Key([12, 24, 36], list_of(integer(1), lengths=(3,))),
    # Norm of ASPPHead's layers; GroupNorm by default: with allocation a head may see a sub-batch
    # of one image.
    "MODEL.DENSE.HEAD_NORM": Key("GN", one_of(NORMS)),
})


@CONFIG_KEYS.rule("MODEL.DENSE.HEAD_CHANNELS", "MODEL.DENSE.HEAD_NORM")
def _head_channels_fit_norm(cfg):
    dense = cfg.MODEL.DENSE
    if dense.HEAD_NORM == "GN" and dense.HEAD_CHANNELS % GROUP_NORM_GROUPS:
        fail("MODEL.DENSE.HEAD_CHANNELS", dense.HEAD_CHANNELS, f"must be divisible by {GROUP_NORM_GROUPS} "
             f"with cfg.MODEL.DENSE.HEAD_NORM = 'GN' (GroupNorm with {GROUP_NORM_GROUPS} groups)")


@DENSE_HEAD_REGISTRY.register()
class ASPPHead(nn.Module):
    """DeepLab-v3-style head: detectron2's ASPP, a 3x3 conv and a 1x1 predictor (the per-task
    heads of the paper's ResNet-50 NYUv2-40 and Cityscapes models)."""

    def __init__(self, cfg, in_channels: int, out_channels: int):
        super().__init__()
        channels, norm = cfg.MODEL.DENSE.HEAD_CHANNELS, cfg.MODEL.DENSE.HEAD_NORM
        self.aspp = ASPP(in_channels, channels, cfg.MODEL.DENSE.ASPP_DILATIONS, norm=norm, activation=F.relu)
        self.conv = Conv2d(channels, channels, 3, padding=1, bias=not norm,
                           norm=get_norm(norm, channels), activation=F.relu)
        weight_init.c2_msra_fill(self.conv)
        self.predictor = nn.Conv2d(channels, out_channels, 1)
        nn.init.normal_(self.predictor.weight, std=0.001)
        nn.init.zeros_(self.predictor.bias)

    def forward(self, x):
        return self.predictor(self.conv(self.aspp(x)))


@DENSE_HEAD_REGISTRY.register()
class SegNetHead(nn.Module):
    """The task-specific layers of the multi-task SegNet (as in MTAN's baseline): a 3x3 conv
    followed by a 1x1 predictor on the shared full-resolution decoder features."""

    def __init__(self, cfg, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, in_channels, 3, padding=1)
        self.predictor = nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x):
        return self.predictor(self.conv(x))
