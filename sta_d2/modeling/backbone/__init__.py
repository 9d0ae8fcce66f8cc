from .dilated_resnet import build_dilated_resnet_backbone
from .segnet import SegNet, build_segnet_backbone
