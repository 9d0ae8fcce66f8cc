"""Building the weighting method a config selects."""
from .base import WEIGHTING_REGISTRY, TaskWeighting
from .composition import WeightedGradientMethod


def build_weighting(cfg, model, num_images: int) -> TaskWeighting:
    """The method ``cfg.STA.WEIGHTING.NAME`` for ``model`` (a multi-task model, see
    :meth:`TaskWeighting.from_config`), which from now on produces the method's side outputs.
    Raises STAConfigError if the method cannot train the model."""
    cls = WEIGHTING_REGISTRY.get(cfg.STA.WEIGHTING.NAME)
    cls.check_model(model)
    method = cls.from_config(cfg, model, num_images)
    if cfg.STA.WEIGHTING.LOSS_WEIGHTING:
        loss_weighting = WEIGHTING_REGISTRY.get(cfg.STA.WEIGHTING.LOSS_WEIGHTING).from_config(cfg, model, num_images)
        method = WeightedGradientMethod(loss_weighting, method)
    if cls.SIDE_OUTPUTS:
        model.request_side_outputs(cls.SIDE_OUTPUTS)
    return method
