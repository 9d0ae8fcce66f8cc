"""Loss-weighting methods and IAL on tiny problems whose gradients are worked out by hand."""
import io
import math

import pytest
import torch
from detectron2.config import get_cfg
from torch import nn

from sta_d2 import STAConfigError, add_sta_config, validate_sta_config
from sta_d2.weighting import (
    DynamicWeightAverage,
    ImpartialAuxiliaryLearning,
    StaticWeighting,
    UncertaintyWeighting,
    WeightingStep,
    build_weighting,
)


class FakeModel(nn.Module):
    """A shared vector theta and one scalar head h_t per task: L_t = h_t * (theta . x_t), exposing
    what sta_d2's MultiTaskModel exposes to the weighting methods."""

    def __init__(self, theta=(1.0, 2.0), heads=(1.0, 2.0), tasks=("p", "a")):
        super().__init__()
        self.tasks = list(tasks)
        self.theta = nn.Parameter(torch.tensor(theta))
        self.heads = nn.ParameterDict({t: nn.Parameter(torch.tensor(h)) for t, h in zip(tasks, heads)})
        self._representation = []

    def task_losses(self, inputs, active):
        z = self.theta * 1.0
        self._representation = [z]
        return {t: self.heads[t] * (z @ torch.tensor(x)) * (1.0 if t in active else 0.0)
                for t, x in zip(self.tasks, inputs)}

    def shared_parameters(self):
        return [self.theta]

    def last_shared_layer(self):
        return self.theta

    def shared_representation(self):
        return self._representation


X = ((3.0, 4.0), (1.0, 0.0))  # x_p, x_a: at theta = (1, 2), L_p = 11 h_p and L_a = h_a


def run(method, model, active, inputs=X, iteration=0):
    model.zero_grad(set_to_none=True)
    method.zero_grad(set_to_none=True)
    losses = model.task_losses(inputs, active)
    return method.backward(losses, WeightingStep(model=model, active=list(active), iteration=iteration))


def cfg_with(**weighting):
    """A dense config (valid as it is) with the given method hyper-parameters (NODE__KEY=value)."""
    cfg = get_cfg()
    add_sta_config(cfg)
    cfg.MODEL.META_ARCHITECTURE = "DenseMultiTaskNet"
    for key, value in weighting.items():
        node, name = key.split("__")
        cfg.STA.WEIGHTING[node][name] = value
    return cfg


def reload(method):
    buffer = io.BytesIO()
    torch.save(method.state_dict(), buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


# ---- Static and uncertainty weighting ----------------------------------------------------------

def test_static_weights_scale_each_task_gradient():
    model, method = FakeModel(), StaticWeighting(["p", "a"], [0.5, 3.0])
    weights = run(method, model, ["p", "a"])
    assert weights == {"p": 0.5, "a": 3.0}
    # d/dtheta (0.5 * 1 * theta.(3,4) + 3 * 2 * theta.(1,0)) = (1.5 + 6, 2)
    assert torch.allclose(model.theta.grad, torch.tensor([7.5, 2.0]))
    assert torch.allclose(model.heads["p"].grad, torch.tensor(0.5 * 11))
    assert torch.allclose(model.heads["a"].grad, torch.tensor(3.0 * 1))


def test_uncertainty_weights_loss_and_log_variance_gradients():
    model, method = FakeModel(), UncertaintyWeighting(["p", "a"], init_log_var=0.0)
    with torch.no_grad():
        method.log_vars.copy_(torch.tensor([math.log(2.0), -1.0]))
    losses = model.task_losses(X, ["p", "a"])  # L_p = 11, L_a = 2
    step = WeightingStep(model=model, active=["p", "a"], iteration=0)
    w = method.weights(losses, step)
    assert float(w["p"].detach()) == pytest.approx(0.5) and float(w["a"].detach()) == pytest.approx(math.e)
    total = sum(w[t] * losses[t] for t in method.tasks) + method.regulariser(step)
    assert math.isclose(float(total.detach()), 0.5 * 11 + math.log(2) + math.e * 2 - 1, rel_tol=1e-6)

    weights = run(method, model, ["p", "a"])
    assert weights == pytest.approx({"p": 0.5, "a": math.e})
    # d/ds_t (exp(-s_t) L_t + s_t) = 1 - exp(-s_t) L_t
    assert torch.allclose(method.log_vars.grad, torch.tensor([1 - 0.5 * 11, 1 - math.e * 2]))
    assert torch.allclose(model.theta.grad, torch.tensor([0.5 * 3 + math.e * 2, 0.5 * 4]))


def test_uncertainty_absent_task_has_no_log_variance_term():
    model, method = FakeModel(), UncertaintyWeighting(["p", "a"])
    run(method, model, ["p"])
    assert torch.allclose(method.log_vars.grad, torch.tensor([1 - 11.0, 0.0]))  # a: no s_a, L_a = 0
    assert torch.allclose(model.heads["a"].grad, torch.tensor(0.0))


# ---- DWA -----------------------------------------------------------------------------------------

def dwa_step(method, losses, active):
    """One DWA step with the given loss values of the active tasks (absent ones are exact zeros)."""
    model = FakeModel(theta=(1.0, 0.0), heads=(1.0, 1.0), tasks=("p", "a"))
    inputs = [(losses.get(t, 0.0), 0.0) for t in model.tasks]  # L_t = h_t * theta . x_t = x_t[0]
    return run(method, model, active, inputs)


def test_dwa_weights_from_window_means_of_active_steps():
    method = DynamicWeightAverage(["p", "a"], window=2, temperature=2.0)
    history = [
        ({"p": 4.0, "a": 1.0}, ["p", "a"]),  # window 1: means p 3, a 2
        ({"p": 2.0, "a": 3.0}, ["p", "a"]),
        ({"p": 1.0}, ["p"]),  # window 2: a absent at one step: means p 1.5, a 4 (not (0 + 4) / 2)
        ({"p": 2.0, "a": 4.0}, ["p", "a"]),
    ]
    for losses, active in history:
        assert dwa_step(method, losses, active) == {"p": 1.0, "a": 1.0}  # first two windows
    # r_p = 1.5 / 3 = 0.5, r_a = 4 / 2 = 2; w = 2 softmax(r / 2)
    expected_p = 2 * math.exp(0.25) / (math.exp(0.25) + math.exp(1.0))
    weights = dwa_step(method, {"p": 3.0}, ["p"])  # window 3: a never active
    assert weights == pytest.approx({"p": expected_p, "a": 2 - expected_p})
    dwa_step(method, {"p": 3.0}, ["p"])
    # p: means 3 then 1.5 -> r_p = 2; a keeps its two last means (4, 2) -> r_a = 2
    assert dwa_step(method, {"p": 1.0, "a": 1.0}, ["p", "a"]) == pytest.approx({"p": 1.0, "a": 1.0})
    assert torch.equal(method.known, torch.tensor([2, 2]))
    assert int(method.steps_in_window) == 1 and torch.equal(method.window_count, torch.tensor([1, 1]))


def test_dwa_weights_scale_the_gradients():
    method = DynamicWeightAverage(["p", "a"], window=1, temperature=1.0)
    for losses in ({"p": 1.0, "a": 1.0}, {"p": 2.0, "a": 1.0}):
        dwa_step(method, losses, ["p", "a"])
    model = FakeModel()
    weights = run(method, model, ["p", "a"])
    w_p = 2 * math.exp(2.0) / (math.exp(2.0) + math.exp(1.0))
    assert weights == pytest.approx({"p": w_p, "a": 2 - w_p})
    assert torch.allclose(model.heads["p"].grad, torch.tensor(w_p * 11))


# ---- IAL -----------------------------------------------------------------------------------------

def ial(log_vars, primary="p"):
    method = ImpartialAuxiliaryLearning(["p", "a"], primary=primary)
    with torch.no_grad():
        method.log_vars.copy_(torch.tensor(log_vars))
    return method


def test_ial_heads_get_uncertainty_weights_shared_gets_normalised_auxiliary_gradient():
    # g_p = h_p x_p = (3, 4), ||g_p|| = 5; g_a = h_a x_a = (2, 0), ||g_a|| = 2; s = (0, log 2)
    model, method = FakeModel(), ial([0.0, math.log(2.0)])
    weights = run(method, model, ["p", "a"])
    assert weights == pytest.approx({"p": 1.0, "a": 0.5})
    # c_a = min(1, exp(0 - log 2)) = 0.5: theta.grad = (3, 4) + 0.5 * 5 / 2 * (2, 0)
    assert torch.allclose(model.theta.grad, torch.tensor([5.5, 4.0]))
    assert torch.allclose(model.heads["p"].grad, torch.tensor(11.0))  # exp(0) * theta . x_p
    assert torch.allclose(model.heads["a"].grad, torch.tensor(0.5))  # exp(-log 2) * theta . x_a
    assert torch.allclose(method.log_vars.grad, torch.tensor([1 - 11.0, 1 - 0.5 * 2]))
    assert float(method.primary_grad_norm) == pytest.approx(5.0)


def test_ial_auxiliary_share_is_capped_at_the_primary_gradient_norm():
    model, method = FakeModel(), ial([0.0, -math.log(2.0)])  # auxiliary more precise: c_a = 1
    run(method, model, ["p", "a"])
    assert torch.allclose(model.theta.grad, torch.tensor([3 + 5.0, 4.0]))


def test_ial_with_the_primary_absent_uses_its_last_gradient_norm():
    model, method = FakeModel(), ial([0.0, math.log(2.0)])
    run(method, model, ["a"])  # primary never seen: auxiliary weighted by exp(-s_a) = 0.5
    assert torch.allclose(model.theta.grad, torch.tensor([1.0, 0.0]))
    assert torch.allclose(method.log_vars.grad, torch.tensor([0.0, 0.0]))  # no s_p term, 1 - 0.5 * 2
    run(method, model, ["p", "a"])
    run(method, model, ["a"])  # reference norm 5 from the previous step: 0.5 * 5 / 2 * (2, 0)
    assert torch.allclose(model.theta.grad, torch.tensor([2.5, 0.0]))
    assert model.heads["p"].grad is None or float(model.heads["p"].grad) == 0.0


def test_ial_primary_is_configurable():
    # primary a: g = (2, 0) + min(1, exp(log 2 - 0)) * 2 / 5 * (3, 4)
    model, method = FakeModel(), ial([0.0, math.log(2.0)], primary="a")
    run(method, model, ["p", "a"])
    assert torch.allclose(model.theta.grad, torch.tensor([2 + 1.2, 1.6]))
    cfg = cfg_with(IAL__PRIMARY="a")
    cfg.STA.WEIGHTING.NAME = "ImpartialAuxiliaryLearning"
    assert build_weighting(cfg, FakeModel(), num_images=0).primary == "a"
    assert ImpartialAuxiliaryLearning(["p", "a"]).primary == "p"  # default: the first task


# ---- state and config ----------------------------------------------------------------------------

def test_state_round_trips_through_a_weights_only_load():
    dwa = DynamicWeightAverage(["p", "a"], window=2)
    for losses in ({"p": 4.0, "a": 1.0}, {"p": 2.0, "a": 3.0}, {"p": 1.0}):
        dwa_step(dwa, losses, list(losses))
    assert dwa.known.tolist() == [1, 1] and int(dwa.steps_in_window) == 1  # mid-window state
    ial_method = ial([0.3, -0.2])
    run(ial_method, FakeModel(), ["p", "a"])
    uw = UncertaintyWeighting(["p", "a"], init_log_var=0.7)
    static = StaticWeighting(["p", "a"], [1.0, 2.0])
    fresh = {DynamicWeightAverage: lambda: DynamicWeightAverage(["p", "a"], window=2),
             ImpartialAuxiliaryLearning: lambda: ImpartialAuxiliaryLearning(["p", "a"]),
             UncertaintyWeighting: lambda: UncertaintyWeighting(["p", "a"]),
             StaticWeighting: lambda: StaticWeighting(["p", "a"], [0.0, 0.0])}
    for method in (dwa, ial_method, uw, static):
        loaded = fresh[type(method)]()
        loaded.load_state_dict(reload(method))
        saved, restored = method.state_dict(), loaded.state_dict()
        assert saved.keys() == restored.keys()
        assert all(torch.equal(saved[k], restored[k]) and saved[k].dtype == restored[k].dtype for k in saved)


@pytest.mark.parametrize("name, settings, key", [
    ("StaticWeighting", {"STATIC__WEIGHTS": [1.0, -1.0]}, "STATIC.WEIGHTS"),
    ("DynamicWeightAverage", {"DWA__WINDOW": 0}, "DWA.WINDOW"),
    ("DynamicWeightAverage", {"DWA__TEMPERATURE": 0.0}, "DWA.TEMPERATURE"),
])
def test_bad_config_values_name_the_key(name, settings, key):
    cfg = cfg_with(**settings)
    cfg.STA.WEIGHTING.NAME = name
    with pytest.raises(STAConfigError, match=f"cfg.STA.WEIGHTING.{key}"):
        validate_sta_config(cfg)


@pytest.mark.parametrize("name, settings, key", [
    ("StaticWeighting", {"STATIC__WEIGHTS": [1.0]}, "STATIC.WEIGHTS"),
    ("ImpartialAuxiliaryLearning", {"IAL__PRIMARY": "depth"}, "IAL.PRIMARY"),
])
def test_values_that_do_not_fit_the_model_name_the_key(name, settings, key):
    cfg = cfg_with(**settings)
    cfg.STA.WEIGHTING.NAME = name
    validate_sta_config(cfg)  # they depend on the model's tasks: checked when the method is built for it
    with pytest.raises(STAConfigError, match=f"cfg.STA.WEIGHTING.{key}"):
        build_weighting(cfg, FakeModel(), num_images=0)
