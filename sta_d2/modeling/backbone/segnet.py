from typing import List

import torch.nn.functional as F
from detectron2.layers import Conv2d, ShapeSpec, get_norm
from detectron2.modeling import BACKBONE_REGISTRY, Backbone
from torch import nn

from ...specs import GROUP_NORM_GROUPS, NORMS, ConfigKeys, Key, fail, integer, list_of, one_of

CONFIG_KEYS = ConfigKeys({
    # "build_segnet_backbone": the SegNet encoder-decoder of the NYUv2-13 experiments; the widths
    # and numbers of 3x3 convolutions of its blocks, and their norm.
    "MODEL.SEGNET.WIDTHS": Key([64, 128, 256, 512, 512], list_of(integer(1), nonempty=True)),
    "MODEL.SEGNET.NUM_CONVS": Key([2, 2, 3, 3, 3], list_of(integer(1), nonempty=True)),
    "MODEL.SEGNET.NORM": Key("BN", one_of(NORMS)),
})


@CONFIG_KEYS.rule("MODEL.SEGNET.WIDTHS", "MODEL.SEGNET.NUM_CONVS", "MODEL.SEGNET.NORM")
def _segnet_blocks_fit(cfg):
    segnet = cfg.MODEL.SEGNET
    if len(segnet.WIDTHS) != len(segnet.NUM_CONVS):
        fail("MODEL.SEGNET.NUM_CONVS", segnet.NUM_CONVS,
             f"needs one entry per block of cfg.MODEL.SEGNET.WIDTHS = {list(segnet.WIDTHS)}")
    if segnet.NORM == "GN" and any(w % GROUP_NORM_GROUPS for w in segnet.WIDTHS):
        fail("MODEL.SEGNET.WIDTHS", segnet.WIDTHS, f"must be divisible by {GROUP_NORM_GROUPS} with "
             f"cfg.MODEL.SEGNET.NORM = 'GN' (GroupNorm with {GROUP_NORM_GROUPS} groups)")


def _conv_block(in_channels: int, out_channels: int, num_convs: int, norm: str) -> nn.Sequential:
    layers = []
    for i in range(num_convs):
        channels = in_channels if i == 0 else out_channels
        layers.append(
            Conv2d(channels, out_channels, 3, padding=1, bias=not norm,
                   norm=get_norm(norm, out_channels), activation=F.relu)
        )
    return nn.Sequential(*layers)


class SegNet(Backbone):
    """SegNet encoder-decoder (Badrinarayanan et al.), the shared network of the paper's NYUv2-13
    experiments: blocks of 3x3 conv + norm + ReLU, 2x2 max pooling whose indices the decoder uses
    to unpool. Returns one full-resolution feature map, "segnet", with ``widths[0]`` channels."""

    def __init__(self, in_channels: int, widths: List[int], num_convs: List[int], norm: str):
        super().__init__()
        if len(widths) != len(num_convs):
            raise ValueError(f"SegNet widths {widths} and num_convs {num_convs} differ in length")
        channels = [in_channels] + list(widths)
        self.encoder = nn.ModuleList(
            _conv_block(channels[i], channels[i + 1], n, norm) for i, n in enumerate(num_convs)
        )
        # Decoder block i maps widths[i] channels back to widths[i - 1] (widths[0] for block 0).
        self.decoder = nn.ModuleList(
            _conv_block(widths[i], widths[max(i - 1, 0)], n, norm) for i, n in enumerate(num_convs)
        )
        self._out_features = ["segnet"]
        self._out_feature_channels = {"segnet": widths[0]}
        self._out_feature_strides = {"segnet": 1}
        self._size_divisibility = 2 ** len(widths)

    @property
    def size_divisibility(self) -> int:
        return self._size_divisibility

    def forward(self, x):
        indices, sizes = [], []
        for block in self.encoder:
            x = block(x)
            sizes.append(x.shape[-2:])
            x, idx = F.max_pool2d(x, 2, 2, return_indices=True)
            indices.append(idx)
        for block, idx, size in zip(reversed(self.decoder), reversed(indices), reversed(sizes)):
            x = block(F.max_unpool2d(x, idx, 2, 2, output_size=size))
        return {"segnet": x}


@BACKBONE_REGISTRY.register()
def build_segnet_backbone(cfg, input_shape: ShapeSpec):
    return SegNet(input_shape.channels, cfg.MODEL.SEGNET.WIDTHS, cfg.MODEL.SEGNET.NUM_CONVS, cfg.MODEL.SEGNET.NORM)
