"""A loss weighting composed with a gradient method (STA.WEIGHTING.LOSS_WEIGHTING + NAME), worked
out by hand on a linear problem, and trained through STATrainer."""
import math

import pytest
import torch
from detectron2.config import get_cfg

from conftest import dense_cfg, short_run
from sta_d2 import STAConfigError, STATrainer, add_sta_config, validate_sta_config
from sta_d2.weighting import MGDAUB, PCGrad, UncertaintyWeighting, build_weighting
from sta_d2.weighting.composition import WeightedGradientMethod
from test_weighting_gradient_methods import FakeModel, close, head_grads, run

TASKS = ["a", "b"]
# L_a = theta_0, L_b = -theta_0 + theta_1: at theta = (2, 3, 1, 1), L_a = 2 and L_b = 1
THETA = (2.0, 3.0, 1.0, 1.0)
X = ((1.0, 0.0, 0.0, 0.0), (-1.0, 1.0, 0.0, 0.0))


def uw(log_vars):
    method = UncertaintyWeighting(TASKS)
    with torch.no_grad():
        method.log_vars.copy_(torch.tensor(log_vars))
    return method


def test_pcgrad_with_uncertainty_weights_by_hand():
    model = FakeModel(THETA, tasks=TASKS)
    method = WeightedGradientMethod(uw([0.0, math.log(2.0)]), PCGrad(TASKS))
    weights = run(method, model, X, active=TASKS)
    # weighted gradients g_a = 1 * (1, 0, 0, 0), g_b = 0.5 * (-1, 1, 0, 0) conflict (g_a . g_b = -0.5):
    # g_a' = g_a + (-0.5, 0.5, 0, 0) = (0.5, 0.5, 0, 0), g_b' = g_b + 0.5 g_a = (0, 0.5, 0, 0)
    assert close(model.theta.grad, [0.5, 1.0, 0.0, 0.0])
    # heads: the weighted sum, w_t L_t / h_t
    assert head_grads(model) == [pytest.approx(2.0), pytest.approx(0.5)]
    # uncertainty: d/ds_t (exp(-s_t) L_t + s_t) = 1 - w_t L_t, untouched by the projection
    assert torch.allclose(method.loss_weighting.log_vars.grad, torch.tensor([1 - 2.0, 1 - 0.5 * 1.0]))
    assert weights == {"a": pytest.approx(1.0), "b": pytest.approx(0.5)}


def test_mgda_with_uncertainty_weights_weighs_the_weighted_gradients():
    model = FakeModel(THETA, tasks=TASKS)
    method = WeightedGradientMethod(uw([0.0, math.log(2.0)]), MGDAUB(TASKS))
    weights = run(method, model, X, active=TASKS)
    # min-norm point of the weighted gradients g_a = (1, 0), g_b = (-0.5, 0.5):
    # alpha_b = g_a . (g_a - g_b) / |g_a - g_b|^2 = 1.5 / 2.5 = 0.6, alpha_a = 0.4
    assert close(model.theta.grad, [0.4 * 1.0 + 0.6 * -0.5, 0.6 * 0.5, 0.0, 0.0])
    assert weights == {"a": pytest.approx(0.4), "b": pytest.approx(0.5 * 0.6)}


def test_an_absent_task_adds_no_uncertainty_term():
    model = FakeModel(THETA, tasks=TASKS)
    method = WeightedGradientMethod(uw([0.0, 0.0]), PCGrad(TASKS))
    run(method, model, X, active=["a"])
    assert close(model.theta.grad, [1.0, 0.0, 0.0, 0.0])
    assert torch.allclose(method.loss_weighting.log_vars.grad, torch.tensor([1 - 2.0, 0.0]))


def weighting_cfg(name, loss_weighting):
    cfg = get_cfg()
    add_sta_config(cfg)
    cfg.MODEL.META_ARCHITECTURE = "DenseMultiTaskNet"
    cfg.STA.WEIGHTING.NAME, cfg.STA.WEIGHTING.LOSS_WEIGHTING = name, loss_weighting
    return cfg


def test_two_keys_select_the_composition():
    cfg = weighting_cfg("PCGrad", "UncertaintyWeighting")
    validate_sta_config(cfg)
    method = build_weighting(cfg, FakeModel(THETA, tasks=TASKS), num_images=0)
    assert isinstance(method, WeightedGradientMethod)
    assert isinstance(method.loss_weighting, UncertaintyWeighting) and isinstance(method.gradient_method, PCGrad)
    assert {"loss_weighting.log_vars", "gradient_method._extra_state"} <= set(method.state_dict())


@pytest.mark.parametrize("name, loss_weighting, key", [
    ("UncertaintyWeighting", "DynamicWeightAverage", "STA.WEIGHTING.LOSS_WEIGHTING"),
    ("GradNorm", "UncertaintyWeighting", "STA.WEIGHTING.LOSS_WEIGHTING"),
    ("PCGrad", "MGDAUB", "STA.WEIGHTING.LOSS_WEIGHTING"),
])
def test_compositions_that_make_no_sense_are_refused(name, loss_weighting, key):
    with pytest.raises(STAConfigError, match=rf"^cfg\.{key} = "):
        validate_sta_config(weighting_cfg(name, loss_weighting))


@pytest.mark.parametrize("name, loss_weighting", [("PCGrad", "UncertaintyWeighting"),
                                                   ("MGDAUB", "DynamicWeightAverage")])
def test_composition_trains_with_ista(nyuv2, tmp_path, name, loss_weighting):
    cfg = dense_cfg("segnet", tasks=("sem_seg", "depth"))
    cfg.MODEL.DENSE.NUM_CLASSES = 13
    cfg.DATASETS.TRAIN = (nyuv2,)
    cfg.STA.WEIGHTING.NAME, cfg.STA.WEIGHTING.LOSS_WEIGHTING = name, loss_weighting
    cfg.STA.WEIGHTING.DWA.WINDOW = 1
    short_run(cfg, tmp_path, "ista", max_iter=4)
    validate_sta_config(cfg)
    trainer = STATrainer(cfg)
    trainer.resume_or_load(resume=False)
    trainer.train()
    weighting = trainer._trainer.weighting
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())
    if name == "PCGrad":
        assert not torch.equal(weighting.loss_weighting.log_vars.detach(), torch.zeros(2))
    else:
        assert int(weighting.loss_weighting.known.min()) == 2  # DWA saw every window
