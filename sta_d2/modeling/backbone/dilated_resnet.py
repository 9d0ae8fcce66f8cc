from detectron2.layers import ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY
from detectron2.modeling.backbone.resnet import build_resnet_backbone

from ...specs import ConfigKeys, Key, one_of

OUTPUT_STRIDES = (8, 16, 32)

CONFIG_KEYS = ConfigKeys({
    # "build_dilated_resnet_backbone": detectron2's ResNet with res4/res5 dilated instead of
    # strided down to this output stride (8, 16 or 32).
    "MODEL.RESNETS.OUTPUT_STRIDE": Key(8, one_of(OUTPUT_STRIDES)),
})


def _dilate_block(block, dilation):
    """Make a ResNet block keep its input resolution, widening its 3x3 convolutions instead."""
    for conv in (m for m in block.modules() if hasattr(m, "dilation") and hasattr(m, "kernel_size")):
        conv.stride = (1, 1)
        if conv.kernel_size == (3, 3):
            conv.dilation = (dilation, dilation)
            conv.padding = (dilation, dilation)
    block.stride = 1


@BACKBONE_REGISTRY.register()
def build_dilated_resnet_backbone(cfg, input_shape: ShapeSpec):
    """detectron2's ResNet (same modules and parameter names, so its ImageNet weights load) with
    res4 and res5 dilated rather than strided, for an output stride of
    ``cfg.MODEL.RESNETS.OUTPUT_STRIDE`` (8: res4 x2 and res5 x4; 16: res5 x2; 32: plain)."""
    output_stride = cfg.MODEL.RESNETS.OUTPUT_STRIDE
    resnet = build_resnet_backbone(cfg, input_shape)
    dilation = 1
    for name, stride in (("res4", 16), ("res5", 32)):
        if stride <= output_stride or not hasattr(resnet, name):
            continue
        dilation *= 2
        for block in getattr(resnet, name):
            _dilate_block(block, dilation)
        if name in resnet._out_feature_strides:
            resnet._out_feature_strides[name] = output_stride
    return resnet
