import torch.nn.functional as F
from torch import nn

from ..specs import Key, integer, number
from .base import WEIGHTING_REGISTRY
from .static import EqualWeighting


def _conv_stack(channels, transpose):
    """Three stride-2 (transposed) convolutions through ``channels``, ReLU in between."""
    conv = nn.ConvTranspose2d if transpose else nn.Conv2d
    layers = []
    for i, (c_in, c_out) in enumerate(zip(channels, channels[1:])):
        layers.append(conv(c_in, c_out, 4 if transpose else 3, stride=2, padding=1))
        if i < len(channels) - 2:
            layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


@WEIGHTING_REGISTRY.register()
class JointTaskRegularization(EqualWeighting):
    """Joint-Task Regularization (JTR; Nishi, Kim, Li and Pfister, CVPR 2024, arXiv 2404.01976),
    for partially labelled dense multi-task learning.

    The model stacks every task's prediction of an image into one tensor Y_hat (class
    probabilities, depth, unit normals; every head runs on every image) and builds the target Y
    from the same tensor with the labels put in where the image is allocated the task and the
    pixel is valid (one-hot classes), the detached prediction elsewhere (see
    ``DenseMultiTaskNet.joint_outputs``). An encoder E (three stride-2 convolutions, ``CHANNELS``
    wide, ``LATENT_CHANNELS`` out) maps both to a joint-task latent space, and a decoder D
    (transposed convolutions) maps back. The step's loss is the plain sum of the task losses plus

        WEIGHT * ( ||E(Y_hat) - E(Y)||^2  +  ||D(E(Y)) - Y||^2 + ||D(E(sg(Y_hat))) - sg(Y_hat)||^2 ),

    mean squared errors, sg = stop-gradient: the distance trains the heads (and the shared
    network behind them) and E; the reconstructions train only E and D, so that E cannot map
    everything to one point. E and D are the method's parameters (optimizer group at
    ``STA.WEIGHTING.LR``). Under task allocation a task's labels enter Y only on the images
    allocated it, so unallocated labels act as missing ones. The layer sizes and default weight
    are ours: the paper's exact architecture was not available offline. Dense models only.
    """

    CONFIG_NAME = "JTR"
    CONFIG = {"WEIGHT": Key(1.0, number(positive=True)), "CHANNELS": Key(64, integer(1)),
              "LATENT_CHANNELS": Key(32, integer(1))}
    SIDE_OUTPUTS = ("joint_outputs",)

    def __init__(self, tasks, in_channels, weight=1.0, channels=64, latent_channels=32):
        super().__init__(tasks)
        self.weight = float(weight)
        self.encoder = _conv_stack([in_channels, channels, channels, latent_channels], transpose=False)
        self.decoder = _conv_stack([latent_channels, channels, channels, in_channels], transpose=True)

    @classmethod
    def from_config(cls, cfg, model, num_images):
        return cls(model.tasks, model.joint_channels, **cls.hyper_parameters(cfg))

    def reconstruct(self, latent, size):
        return F.interpolate(self.decoder(latent), size=size, mode="bilinear", align_corners=False)

    def joint_loss(self, outputs, targets):
        """The bracket of the class docstring, for joint predictions ``outputs`` and ``targets``."""
        size = outputs.shape[-2:]
        latent_target = self.encoder(targets)
        distance = F.mse_loss(self.encoder(outputs), latent_target)
        fixed = outputs.detach()
        reconstruction = (F.mse_loss(self.reconstruct(latent_target, size), targets)
                          + F.mse_loss(self.reconstruct(self.encoder(fixed), size), fixed))
        return distance + reconstruction

    def regulariser(self, step):
        """In float32 (the trainer runs methods outside autocast; E and D are float32)."""
        return self.weight * self.joint_loss(*(x.float() for x in step.model.side_outputs()["joint_outputs"]))
