"""Gradient-based methods (PCGrad, MGDA-UB, GradNorm, CosReg) on tiny problems whose gradients are
worked out by hand or in closed form."""
import io
import itertools
import math

import pytest
import torch
from detectron2.config import get_cfg
from detectron2.modeling import build_model
from detectron2.utils.events import EventStorage
from torch import nn

from conftest import dense_batch, dense_cfg
from sta_d2 import STAConfigError, add_sta_config, validate_sta_config
from sta_d2.allocation import TaskAssignment
from sta_d2.weighting import CosReg, GradNorm, MGDAUB, PCGrad, WeightingStep, build_weighting
from sta_d2.weighting.gradients import split_parameters
from sta_d2.weighting.mgda import TOLERANCE, frank_wolfe, min_norm_weights
from sta_d2.weighting.pcgrad import project_conflicting

TASKS = ["a", "b", "c"]


class FakeModel(nn.Module):
    """A shared vector theta (plus a shared parameter no loss uses) and one scalar head h_t per task:
    L_t = h_t * sum(x_t * z^p) / p with z = theta (the shared representation, split in two tensors),
    so that grad_theta L_t = h_t x_t theta^(p-1). Exposes what sta_d2's MultiTaskModel exposes."""

    def __init__(self, theta, tasks=TASKS, power=1):
        super().__init__()
        self.tasks = list(tasks)
        self.power = power
        self.theta = nn.Parameter(torch.tensor(theta, dtype=torch.float64))
        self.unused = nn.Parameter(torch.zeros(2, dtype=torch.float64))
        self.heads = nn.ParameterDict({t: nn.Parameter(torch.tensor(1.0, dtype=torch.float64)) for t in tasks})
        self._representation = []

    def task_losses(self, inputs, active):
        z = [self.theta[:2] * 1.0, self.theta[2:] * 1.0]
        self._representation = z
        losses = {}
        for t, x in zip(self.tasks, inputs):
            value = (torch.tensor(x, dtype=torch.float64) * torch.cat(z) ** self.power).sum() / self.power
            losses[t] = self.heads[t] * value * (1.0 if t in active else 0.0)
        return losses

    def shared_parameters(self):
        return [self.theta, self.unused]

    def last_shared_layer(self):
        return self.theta

    def shared_representation(self):
        return self._representation


def run(method, model, inputs, active=TASKS):
    model.zero_grad(set_to_none=True)
    method.zero_grad(set_to_none=True)
    losses = model.task_losses(inputs, active)
    return method.backward(losses, WeightingStep(model=model, active=list(active), iteration=0))


def head_grads(model):
    return [None if model.heads[t].grad is None else float(model.heads[t].grad) for t in model.tasks]


def roundtrip(state):
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def close(a, b, tol=1e-9):
    return torch.allclose(torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64), atol=tol)


# ---- PCGrad -----------------------------------------------------------------------------------

def test_pcgrad_projects_only_conflicting_pairs_in_2d():
    conflicting = torch.tensor([[1.0, 0.0], [-1.0, 1.0]])
    # g1.g2 = -1: g1 - (-1/2) g2 = (0.5, 0.5); g2 - (-1/1) g1 = (0, 1)
    assert close(project_conflicting(conflicting, [[1], [0]]), [[0.5, 0.5], [0.0, 1.0]])
    agreeing = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    assert torch.equal(project_conflicting(agreeing, [[1], [0]]), agreeing)


def test_pcgrad_three_tasks_fixed_orders_project_against_original_gradients():
    g = torch.tensor([[1.0, 0, 0], [-1, 1, 0], [-1, -2, 1]], dtype=torch.float64)
    # order 1->2 for g0: g0 + g1/2 = (.5,.5,0); then .g2 = -1.5, |g2|^2 = 6: + g2/4 = (.25, 0, .25)
    forward = [[0.25, 0, 0.25], [-1 / 3, 1 / 3, 1 / 3], [-1, -1, 1]]
    # order 2->1 for g0: g0 + g2/6 = (5/6, -1/3, 1/6); then .g1 = -7/6: + 7/12 g1 = (1/4, 1/4, 1/6)
    backward = [[0.25, 0.25, 1 / 6], [0, 2 / 3, 1 / 6], [0, -1.5, 1]]
    assert close(project_conflicting(g, [[1, 2], [0, 2], [0, 1]]), forward)
    assert close(project_conflicting(g, [[2, 1], [2, 0], [1, 0]]), backward)


def test_pcgrad_method_sums_projected_gradients_heads_get_plain_sum_and_absent_task_is_excluded():
    model = FakeModel([1.0, 2.0, 3.0])
    inputs = ((1.0, 0.0, 0.0), (-1.0, 1.0, 0.0), (0.0, 0.0, 5.0))
    with EventStorage() as storage:
        weights = run(PCGrad(TASKS), model, inputs, active=["a", "b"])
        # (0.5, 0.5, 0) + (0, 1, 0): c (absent, zero gradient) takes no part
        assert close(model.theta.grad, [0.5, 1.5, 0.0])
        assert model.unused.grad is None
        # heads: d/dh_t of the plain sum = theta . x_t (c absent: its loss is an exact zero)
        assert head_grads(model) == [1.0, 1.0, 0.0]
        assert weights == {"a": 1.0, "b": 1.0, "c": 1.0}
        assert storage.latest()["pcgrad/conflict_fraction"][0] == 1.0
        assert math.isclose(storage.latest()["grad/mean_cosine"][0], -1 / math.sqrt(2))


def test_pcgrad_orders_come_from_the_seeded_generator_and_resume_exactly():
    method = PCGrad(TASKS, seed=5)
    method.random_orders(3)
    restored = PCGrad(TASKS, seed=9)
    restored.load_state_dict(roundtrip(method.state_dict()))
    draws = [method.random_orders(3) for _ in range(5)]
    assert draws == [restored.random_orders(3) for _ in range(5)]
    assert all(sorted(order) == [j for j in range(3) if j != i] for d in draws for i, order in enumerate(d))
    assert len({str(d) for d in draws}) > 1

    model = FakeModel([1.0, 1.0, 1.0])
    inputs = ((1.0, 0, 0), (-1.0, 1, 0), (-1.0, -2, 1))
    orders = PCGrad(TASKS, seed=3).random_orders(3)
    run(PCGrad(TASKS, seed=3), model, inputs)
    expected = project_conflicting(torch.tensor(inputs, dtype=torch.float64), orders).sum(0)
    assert close(model.theta.grad, expected)


# ---- MGDA-UB ----------------------------------------------------------------------------------

def two_task_alpha(g1, g2):
    return min(1.0, max(0.0, float((g2 - g1) @ g2 / (g1 - g2).norm() ** 2)))


@pytest.mark.parametrize("x1, x2", [((2.0, 0.0, 1.0), (0.0, 1.0, -1.0)), ((1.0, 0.0, 0.0), (3.0, 1.0, 0.0))])
def test_mgda_two_tasks_closed_form_and_absent_task_weighs_zero(x1, x2):
    model = FakeModel([1.0, 2.0, 3.0])
    weights = run(MGDAUB(TASKS), model, (x1, x2, (7.0, 7.0, 7.0)), active=["a", "b"])
    g1, g2 = torch.tensor(x1, dtype=torch.float64), torch.tensor(x2, dtype=torch.float64)
    alpha = two_task_alpha(g1, g2)
    assert math.isclose(weights["a"], alpha, abs_tol=1e-12) and math.isclose(weights["b"], 1 - alpha, abs_tol=1e-12)
    assert weights["c"] == 0.0
    assert close(model.theta.grad, alpha * g1 + (1 - alpha) * g2)
    # sum_t alpha_t L_t is back-propagated once: heads get alpha_t * (theta . x_t)
    theta = model.theta.detach()
    assert close(head_grads(model), [alpha * float(theta @ g1), (1 - alpha) * float(theta @ g2), 0.0])


def test_mgda_second_case_is_clamped():
    # g2 lies beyond g1: ((g2 - g1) . g2) / |g1 - g2|^2 = 7 / 5 > 1, so alpha_1 = 1
    assert two_task_alpha(torch.tensor([1.0, 0.0]), torch.tensor([3.0, 1.0])) == 1.0


def test_mgda_three_tasks_matches_a_brute_force_grid():
    g = torch.tensor([[1.0, 0.2, 0.5], [-0.6, 1.0, 0.3], [0.1, -0.8, 1.0]], dtype=torch.float64)
    alpha = min_norm_weights(g @ g.T, iterations=250)
    assert alpha.min() >= 0 and math.isclose(float(alpha.sum()), 1.0)
    steps = torch.linspace(0, 1, 401, dtype=torch.float64)
    a, b = torch.meshgrid(steps, steps, indexing="ij")
    keep = a + b <= 1
    grid = torch.stack([a[keep], b[keep], 1 - a[keep] - b[keep]], dim=1)
    norms = ((grid @ g) ** 2).sum(1)
    best = grid[norms.argmin()]
    found = float(((alpha @ g) ** 2).sum())
    assert found <= float(norms.min()) + 1e-9
    assert found >= float(norms.min()) - 1e-3  # the grid is within a step of the optimum
    assert close(alpha, best, tol=5e-3)
    assert alpha.min() > 0.05  # an interior point: all three tasks take part


def test_mgda_l2_normalisation_uses_unit_gradients():
    model = FakeModel([1.0, 2.0, 3.0])
    x1, x2 = torch.tensor([4.0, 0.0, 0.0], dtype=torch.float64), torch.tensor([1.0, 1.0, 0.0], dtype=torch.float64)
    weights = run(MGDAUB(TASKS, normalization="l2"), model, (x1.tolist(), x2.tolist(), (0.0, 0.0, 1.0)),
                  active=["a", "b"])
    alpha = two_task_alpha(x1 / x1.norm(), x2 / x2.norm())
    assert math.isclose(weights["a"], alpha, abs_tol=1e-12) and math.isclose(weights["b"], 1 - alpha, abs_tol=1e-12)


# ---- GradNorm ---------------------------------------------------------------------------------

def test_gradnorm_weight_gradient_targets_and_renormalisation_by_hand():
    method = GradNorm(["a", "b"], alpha=1.0)
    model = FakeModel([1.0, 1.0], tasks=["a", "b"])
    x = ((3.0, 4.0), (1.0, 0.0))  # |grad_W L_t| = |x_t| = (5, 1)
    # step 1: L = (7, 1) recorded as L(0), r = (1, 1); G = (5, 1), target = mean G = 3
    weights = run(method, model, x, active=["a", "b"])
    assert weights == {"a": 1.0, "b": 1.0}
    assert close(method.task_weights.grad, [5.0, -1.0])  # sign(G - G*) |grad_W L_t|
    assert close(model.theta.grad, [4.0, 4.0])  # 1 * x_a + 1 * x_b
    assert close(method.initial_losses, [7.0, 1.0])

    # an optimizer step leaves w = (0.2, 0.8); backward renormalises it to sum 2: (0.4, 1.6)
    with torch.no_grad():
        method.task_weights.copy_(torch.tensor([0.2, 0.8]))
        model.theta.copy_(torch.tensor([1.0, 4.5], dtype=torch.float64))
    # step 2: L = (21, 1), Lt = (3, 1), r = (1.5, 0.5); G = (0.4*5, 1.6*1) = (2, 1.6), mean 1.8
    # target = (2.7, 0.9): G_a < target_a, G_b > target_b
    weights = run(method, model, x, active=["a", "b"])
    assert close([weights["a"], weights["b"]], [0.4, 1.6], tol=1e-6)
    assert close(method.task_weights.grad, [-5.0, 1.0])
    assert close(model.theta.grad, [0.4 * 3 + 1.6 * 1, 0.4 * 4], tol=1e-6)
    assert close(head_grads(model), [0.4 * 21, 1.6 * 1], tol=1e-5)  # the heads get w_t grad L_t
    assert close(method.initial_losses, [7.0, 1.0])


def test_gradnorm_absent_task_is_left_out_and_state_roundtrips():
    method = GradNorm(TASKS, alpha=1.5)
    model = FakeModel([1.0, 1.0, 1.0])
    x = ((3.0, 4.0, 0.0), (1.0, 0.0, 0.0), (0.0, 0.0, 2.0))
    with EventStorage() as storage:
        run(method, model, x, active=["a", "b"])
        assert storage.latest()["gradnorm/loss"][0] == pytest.approx(2 + 2)  # |5 - 3| + |1 - 3|
    assert close(method.task_weights.grad, [5.0, -1.0, 0.0])
    assert method.has_initial_loss.tolist() == [True, True, False]
    with torch.no_grad():
        method.task_weights.copy_(torch.tensor([-1.0, 1.0, 2.0]))  # floored, then summed to 3
    run(method, model, x, active=["c"])
    assert close(method.task_weights.detach(), [1e-6, 1.0, 2.0], tol=1e-5)
    assert method.task_weights.detach().sum().item() == pytest.approx(3.0)
    assert method.has_initial_loss.tolist() == [True, True, True]
    assert close(method.initial_losses, [7.0, 1.0, 2.0])

    restored = GradNorm(TASKS)
    restored.load_state_dict(roundtrip(method.state_dict()))
    for key, value in method.state_dict().items():
        assert torch.equal(restored.state_dict()[key], value)


# ---- CosReg -----------------------------------------------------------------------------------

def cosreg_objective(theta, heads, xs, weight):
    """sum_t L_t + weight * sum_{i<j} cos(g_i, g_j)^2 with the gradients g_t = h_t x_t theta^2 of
    L_t = h_t sum(x_t theta^3) / 3 written out analytically (no autograd)."""
    grads = [h * x * theta ** 2 for h, x in zip(heads, xs)]
    losses = sum(h * (x * theta ** 3).sum() / 3 for h, x in zip(heads, xs))
    cos2 = sum(float(gi @ gj / (gi.norm() * gj.norm())) ** 2 for gi, gj in itertools.combinations(grads, 2))
    return float(losses) + weight * cos2


def test_cosreg_regulariser_value_by_hand():
    model = FakeModel([1.0, 1.0, 1.0], power=3)
    xs = ((1.0, 1.0, 0.0), (1.0, 0.0, 1.0), (0.0, 1.0, -1.0))  # at theta = 1, g_t = x_t
    with EventStorage() as storage:
        assert run(CosReg(TASKS, weight=0.5), model, xs) == {"a": 1.0, "b": 1.0, "c": 1.0}
        # cosines 1/2, 1/2, -1/2
        assert storage.latest()["cosreg/regulariser"][0] == pytest.approx(0.75)
        assert storage.latest()["grad/mean_cosine"][0] == pytest.approx(1 / 6)
        run(CosReg(TASKS, weight=0.5), model, xs, active=["a", "c"])  # b absent: one pair left
        assert storage.latest()["cosreg/regulariser"][0] == pytest.approx(0.25)


def test_cosreg_gradient_matches_finite_differences():
    theta0, weight = torch.tensor([1.0, 0.5, 2.0], dtype=torch.float64), 0.7
    xs = ((1.0, 1.0, 0.0), (1.0, -0.5, 1.0), (0.3, 1.0, -1.0))
    model = FakeModel(theta0.tolist(), power=3)
    with torch.no_grad():
        for t, h in zip(TASKS, (1.0, 2.0, 0.5)):
            model.heads[t].fill_(h)
    run(CosReg(TASKS, weight=weight), model, xs)
    heads0 = torch.tensor([1.0, 2.0, 0.5], dtype=torch.float64)
    x = [torch.tensor(v, dtype=torch.float64) for v in xs]
    eps = 1e-6
    for k in range(3):
        d = torch.zeros(3, dtype=torch.float64)
        d[k] = eps
        numeric = (cosreg_objective(theta0 + d, heads0, x, weight)
                   - cosreg_objective(theta0 - d, heads0, x, weight)) / (2 * eps)
        assert model.theta.grad[k].item() == pytest.approx(numeric, rel=1e-6, abs=1e-8)
        numeric = (cosreg_objective(theta0, heads0 + d, x, weight)
                   - cosreg_objective(theta0, heads0 - d, x, weight)) / (2 * eps)
        assert head_grads(model)[k] == pytest.approx(numeric, rel=1e-6, abs=1e-8)
    assert model.unused.grad is None


def test_cosreg_with_one_active_task_is_the_plain_loss():
    model = FakeModel([1.0, 0.5, 2.0], power=3)
    run(CosReg(TASKS, weight=10.0), model, ((1.0, 1.0, 0.0), (1.0, 0.0, 1.0), (0.0, 1.0, -1.0)), active=["b"])
    assert close(model.theta.grad, [1.0, 0.0, 4.0])  # x_b theta^2
    assert head_grads(model) == [0.0, pytest.approx((1 + 8) / 3), 0.0]


# ---- Configuration ----------------------------------------------------------------------------

@pytest.mark.parametrize("name, node, defaults", [
    ("PCGrad", "PCGRAD", {"SEED": 0}),
    ("MGDAUB", "MGDA", {"NORMALIZATION": "none", "ITERATIONS": 250}),
    ("GradNorm", "GRADNORM", {"ALPHA": 1.5}),
    ("CosReg", "COSREG", {"WEIGHT": 0.1}),
])
def test_methods_build_from_config(name, node, defaults):
    cfg = get_cfg()
    add_sta_config(cfg)
    assert dict(cfg.STA.WEIGHTING[node]) == defaults
    cfg.STA.WEIGHTING.NAME = name
    method = build_weighting(cfg, FakeModel((1.0, 2.0)), num_images=0)
    assert type(method).__name__ == name and method.tasks == TASKS


@pytest.mark.parametrize("key, value", [
    ("PCGRAD.SEED", -1),
    ("MGDA.NORMALIZATION", "max"),
    ("MGDA.ITERATIONS", 0),
    ("GRADNORM.ALPHA", -0.5),
    ("COSREG.WEIGHT", -1.0),
])
def test_bad_hyper_parameters_are_refused(key, value):
    cfg = get_cfg()
    add_sta_config(cfg)
    cfg.MODEL.META_ARCHITECTURE = "DenseMultiTaskNet"
    node, name = key.split(".")
    cfg.STA.WEIGHTING[node][name] = value
    with pytest.raises(STAConfigError, match=f"cfg.STA.WEIGHTING.{key} = "):
        validate_sta_config(cfg)


# ---- Against straightforward references on a real model ----------------------------------------

def segnet_losses(active, seed=0):
    """A tiny SegNet (sem_seg, depth, normal) and its task losses on two images, the tasks of
    ``active`` allocated to both."""
    torch.manual_seed(seed)
    model = build_model(dense_cfg("segnet"))
    model.train()
    mask = torch.tensor([[t in active for t in model.tasks]] * 2)
    batch = TaskAssignment(model.tasks, mask).attach(dense_batch(2, seed=seed))
    return model, batch


def grads_of(params):
    return [None if p.grad is None else p.grad.clone() for p in params]


def assert_same_gradients(params, expected, rel=1e-5):
    """``.grad`` of each parameter is None where ``expected`` is, else within ``rel`` of its largest entry."""
    for p, g in zip(params, expected):
        assert (p.grad is None) == (g is None)
        if g is not None:
            assert torch.allclose(p.grad, g, rtol=rel, atol=rel * float(g.abs().max()) + 1e-12)


@pytest.mark.parametrize("active", [("sem_seg", "depth", "normal"), ("sem_seg", "normal")])
def test_pcgrad_update_matches_a_straightforward_reference(active):
    """Per-task autograd.grad on the shared parameters, Yu et al.'s sequential projection with a
    data-dependent branch on each dot product, the sum; the heads get the plain sum's gradient."""
    model, batch = segnet_losses(active)
    shared, specific = split_parameters(model)
    losses = model.task_losses(model(batch))
    rows = [torch.cat([g.reshape(-1) for g in torch.autograd.grad(losses[t], shared, retain_graph=True)])
            for t in active]
    assert any(rows[i] @ rows[j] < 0 for i, j in itertools.combinations(range(len(rows)), 2))  # a conflict
    update = torch.zeros_like(rows[0])
    for i, order in enumerate(PCGrad(model.tasks, seed=4).random_orders(len(active))):
        g = rows[i].clone()
        for j in order:
            if g @ rows[j] < 0:
                g = g - (g @ rows[j]) / (rows[j] @ rows[j]) * rows[j]
        update += g
    expected = list(update.split([p.numel() for p in shared]))
    expected = [g.view_as(p) for g, p in zip(expected, shared)]
    expected += torch.autograd.grad(sum(losses.values()), specific, retain_graph=True, allow_unused=True)

    PCGrad(model.tasks, seed=4).backward(losses, WeightingStep(model=model, active=list(active), iteration=0))
    assert_same_gradients(shared + specific, expected)
    absent = [t for t in model.tasks if t not in active]
    assert all(float(p.grad.abs().max()) == 0 for t in absent for p in model.heads[t].parameters())


@pytest.mark.parametrize("method", [MGDAUB, GradNorm])
@pytest.mark.parametrize("active", [("sem_seg", "depth", "normal"), ("depth", "normal")])
def test_weighted_sum_methods_match_one_backward_of_the_weighted_sum(method, active):
    """MGDA-UB and GradNorm give the model the gradient of sum_t w_t L_t, which they assemble from
    per-task passes through the heads and one pass through the shared network: it equals one
    backward of the weighted sum of a second, identical forward."""
    model, batch = segnet_losses(active, seed=1)
    weighting = method(model.tasks)
    with torch.no_grad():
        if method is GradNorm:
            weighting.task_weights.copy_(torch.tensor([0.5, 1.5, 1.0]))
    weights = weighting.backward(model.task_losses(model(batch)),
                                 WeightingStep(model=model, active=list(active), iteration=0))
    params = [p for p in model.parameters() if p.requires_grad]
    found = grads_of(params)
    model.zero_grad(set_to_none=True)
    losses = model.task_losses(model(batch))
    expected = torch.autograd.grad(sum(float(weights[t]) * losses[t] for t in model.tasks), params, allow_unused=True)
    for p, f in zip(params, found):
        p.grad = f
    assert_same_gradients(params, expected, rel=1e-4)  # float32: weights applied after, not before


def test_mgda_tolerance_stop_matches_250_iterations_on_random_gram_matrices():
    """Frank-Wolfe stopped at a relative duality gap of TOLERANCE against the 250 iterations of the
    previous rule (stop only at a zero step), on Gram matrices of 2 to 7 random 64-d gradients
    sharing a common part of varying size (from vertex to interior minima): the objective is within
    the guaranteed factor 1 + 2 TOLERANCE, never below the longer run's, and every weight within 1e-3."""
    g = torch.Generator().manual_seed(0)
    iterations = []
    for trial in range(400):
        tasks = 2 + trial % 6
        common = torch.randn(1, 64, generator=g, dtype=torch.float64) * (trial % 4) / 2
        x = torch.randn(tasks, 64, generator=g, dtype=torch.float64) * 2 * torch.rand(tasks, 1, generator=g,
                                                                                      dtype=torch.float64) + common
        gram = x @ x.T
        full = torch.tensor(frank_wolfe(gram.tolist(), 250, tolerance=0.0), dtype=torch.float64)
        stopped = min_norm_weights(gram, 250)
        value = float(stopped @ gram @ stopped)
        assert float(full @ gram @ full) <= value * (1 + 1e-12)
        assert value <= float(full @ gram @ full) + 2 * TOLERANCE * value
        assert float((stopped - full).abs().max()) <= 1e-3
        assert math.isclose(float(stopped.sum()), 1.0) and float(stopped.min()) >= 0
