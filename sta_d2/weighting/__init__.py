"""Task weighting and gradient methods, combinable with every allocation policy."""
from .base import (
    CONFIG_KEYS,
    WEIGHTING_REGISTRY,
    LossWeighting,
    TaskWeighting,
    WeightingStep,
    method_config_keys,
)
from .build import build_weighting
from .gradients import deferred_scalars, loss_scaling
from .static import EqualWeighting, StaticWeighting
from .uncertainty import UncertaintyWeighting
from .dwa import DynamicWeightAverage
from .ial import ImpartialAuxiliaryLearning
from .pcgrad import PCGrad
from .mgda import MGDAUB
from .gradnorm import GradNorm
from .cosreg import CosReg
from .iltp import InstanceLevelTaskParameters
from .jtr import JointTaskRegularization
