"""Mixed precision (``SOLVER.AMP.ENABLED`` / ``train.amp.enabled``) on the CPU path: bfloat16
autocast and a disabled GradScaler, the loop sta_d2 runs with float16 and an enabled scaler on
CUDA (whose float16 scaling is exercised here with an enabled CPU GradScaler). Every policy and
weighting method trains; with ``full`` and the plain sum one step equals detectron2's AMPTrainer;
loss scaling leaves every method's update unchanged; the scaler skips steps whose gradients
overflow, while a non-finite loss still stops training; the scaler's state is checkpointed."""
import pytest
import torch
from detectron2.engine import AMPTrainer
from detectron2.utils.events import EventStorage

from conftest import make_batch
from sta_d2 import STAConfigError, STATrainer, validate_sta_config
from sta_d2.allocation import FullTaskPolicy, policy_names
from sta_d2.data.train_loader import mixed_seed
from sta_d2.engine import AllocationTrainer, unwrap_model
from sta_d2.lazy import build_lazy_trainer
from sta_d2.weighting import EqualWeighting
from test_exactness import build_pair
from test_weighting_training import METHODS, rcnn_cfg, segnet_cfg, train_and_check

POLICIES = policy_names()
SEED = 5


def recorded_losses(model):
    """The loss dicts of ``model``'s forwards, each with whether CPU autocast was on, appended to
    the returned list."""
    seen = []
    model.register_forward_hook(lambda module, args, output: seen.append((output, torch.is_autocast_enabled("cpu"))))
    return seen


def test_full_sum_step_equals_stock_amp_trainer(monkeypatch):
    """One AMP step of AllocationTrainer (``full``, EqualWeighting) against one of detectron2's
    AMPTrainer on the same batch, weights and random state: equal losses and gradients.

    AMPTrainer is CUDA-only; to run it on the CPU path this test patches what it needs: the
    ``torch.cuda.is_available()`` of its assert returns True, its ``torch.cuda.amp.autocast()``
    is CPU bfloat16 autocast (sta_d2's CPU AMP), and it is given a disabled GradScaler (bfloat16
    needs no loss scaling; sta_d2's CPU scaler is disabled too)."""
    ours, stock = build_pair(panoptic=False)
    batch = make_batch(2)
    ours_losses, stock_losses = recorded_losses(ours), recorded_losses(stock)
    ours_trainer = AllocationTrainer(ours, iter(lambda: batch, None), torch.optim.SGD(ours.parameters(), lr=0.1),
                                     FullTaskPolicy(ours.tasks, len(ours.tasks), torch.Generator()),
                                     EqualWeighting(ours.tasks), SEED, amp=True)
    stock_trainer = AMPTrainer(stock, iter(lambda: batch, None), torch.optim.SGD(stock.parameters(), lr=0.1),
                               grad_scaler=torch.amp.GradScaler("cpu", enabled=False))
    with EventStorage(0):
        ours_trainer.iter = 0
        ours_trainer.run_step()
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda.amp, "autocast", lambda: torch.autocast("cpu", dtype=torch.bfloat16))
        torch.manual_seed(mixed_seed(SEED, 0, 0))  # the random state AllocationTrainer's step starts from
        stock_trainer.run_step()
    ((ours_losses, ours_autocast),), ((stock_losses, stock_autocast),) = ours_losses, stock_losses
    assert ours_autocast and stock_autocast
    assert ours_losses.keys() == stock_losses.keys()
    for k, loss in stock_losses.items():
        assert torch.equal(ours_losses[k].float(), loss.float()), k
    stock_params = dict(stock.named_parameters())
    for name, param in ours.named_parameters():
        assert (param.grad is None) == (stock_params[name].grad is None), name
        assert param.grad is None or torch.equal(param.grad, stock_params[name].grad), name
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in ours.parameters())


def amp_segnet_cfg(nyuv2, method, policy, out_dir, **kwargs):
    cfg = segnet_cfg(nyuv2, method, policy, out_dir, **kwargs)
    cfg.SOLVER.AMP.ENABLED = True
    return cfg


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("method", METHODS)
def test_every_method_and_policy_trains_in_bfloat16(nyuv2, tmp_path, method, policy):
    cfg = amp_segnet_cfg(nyuv2, method, policy, tmp_path, max_iter=2, checkpoint_period=100)
    trainer = train_and_check(cfg, tmp_path)
    assert trainer._trainer.autocast_dtype == torch.bfloat16 and not trainer._trainer.grad_scaler.is_enabled()


@pytest.mark.slow  # bfloat16 convolutions are slow on CPUs without native support: 8 s or more
def test_mask_rcnn_trains_with_a_gradient_method_in_bfloat16(shapes, tmp_path):
    cfg = rcnn_cfg(shapes, "PCGrad", "ista", tmp_path)
    cfg.SOLVER.AMP.ENABLED = True
    assert train_and_check(cfg, tmp_path)._trainer.autocast_dtype == torch.bfloat16


@pytest.mark.parametrize("method, loss_weighting", [(m, "") for m in METHODS]
                         + [("PCGrad", "UncertaintyWeighting"), ("MGDAUB", "DynamicWeightAverage")])
def test_loss_scaling_leaves_every_method_update_unchanged(nyuv2, tmp_path, method, loss_weighting):
    """Two steps with an enabled GradScaler (scale 2^12, the float16 path's scaling, here on the
    CPU) end with the same parameters, bit for bit, as without it: every method combines
    unscaled gradients and leaves scaled ones in ``.grad`` for the scaler (a power-of-two scale
    is exact)."""
    params = []
    for scaler in (None, torch.amp.GradScaler("cpu", init_scale=2.0 ** 12)):
        cfg = amp_segnet_cfg(nyuv2, method, "sta", tmp_path / str(len(params)), max_iter=2, checkpoint_period=100)
        cfg.STA.WEIGHTING.LOSS_WEIGHTING = loss_weighting
        torch.manual_seed(0)  # the model's initial weights
        trainer = STATrainer(cfg)
        if scaler:
            trainer._trainer.grad_scaler = scaler
        trainer.train()
        params.append([p.detach().clone() for group in trainer.optimizer.param_groups for p in group["params"]])
    assert scaler.get_scale() == 2.0 ** 12  # no step was skipped
    assert all(torch.equal(a, b) for a, b in zip(*params))


def test_scaler_state_is_checkpointed_and_resume_is_exact(nyuv2, tmp_path):
    """A run's scaler state (scale 2^10, doubling every step) is in its checkpoint and restored;
    resumed inside an ISTA cycle, the run ends with the uninterrupted run's parameters."""
    run_dir, resume_dir = tmp_path / "run", tmp_path / "resumed"
    trainer = STATrainer(amp_segnet_cfg(nyuv2, "PCGrad", "ista", run_dir, max_iter=3, checkpoint_period=1))
    trainer._trainer.grad_scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 10, growth_interval=1)
    trainer.train()
    saved = torch.load(run_dir / "model_0000001.pth", weights_only=True)["trainer"]["_trainer"]["grad_scaler"]
    assert saved["scale"] == 2.0 ** 12 and saved["growth_interval"] == 1  # doubled after each of 2 steps

    resume_dir.mkdir()
    (resume_dir / "model_0000001.pth").write_bytes((run_dir / "model_0000001.pth").read_bytes())
    (resume_dir / "last_checkpoint").write_text("model_0000001.pth")
    resumed = STATrainer(amp_segnet_cfg(nyuv2, "PCGrad", "ista", resume_dir, max_iter=3, checkpoint_period=1))
    resumed._trainer.grad_scaler = torch.amp.GradScaler("cpu")
    resumed.resume_or_load(resume=True)
    assert resumed._trainer.grad_scaler.state_dict() == saved
    resumed.train()
    assert resumed._trainer.grad_scaler.get_scale() == trainer._trainer.grad_scaler.get_scale() == 2.0 ** 13
    final, ours = trainer.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(final[k], ours[k]) for k in final)

    state = resumed._trainer.state_dict()
    del state["grad_scaler"]  # a checkpoint written without AMP: the scale starts afresh
    fresh = torch.amp.GradScaler("cpu", init_scale=2.0 ** 7)
    resumed._trainer.grad_scaler = fresh
    resumed._trainer.load_state_dict(state)
    assert fresh.get_scale() == 2.0 ** 7


def test_lazyconfig_honours_train_amp_enabled(shapes, tmp_path):
    from test_lazyconfig import demo_cfg

    for enabled in (False, True):
        cfg = demo_cfg(shapes, tmp_path, max_iter=4)
        cfg.train.amp.enabled = enabled
        trainer, _ = build_lazy_trainer(cfg)
        assert trainer.autocast_dtype == (torch.bfloat16 if enabled else None)
        assert not trainer.grad_scaler.is_enabled()  # bfloat16 needs no loss scaling


def test_amp_on_an_unsupported_device_names_the_key(nyuv2, tmp_path):
    cfg = amp_segnet_cfg(nyuv2, "EqualWeighting", "sta", tmp_path)
    cfg.MODEL.DEVICE = "meta"
    with pytest.raises(STAConfigError, match=r"SOLVER\.AMP\.ENABLED.*'meta'"):
        validate_sta_config(cfg)


@pytest.mark.parametrize("method", ["EqualWeighting", "PCGrad", "MGDAUB", "GradNorm", "ImpartialAuxiliaryLearning"])
def test_overflowing_gradients_are_skipped_by_the_scaler(nyuv2, tmp_path, method, monkeypatch):
    """Finite losses (times 1e20) whose scaled gradients overflow (scale 2^100): the scaler skips
    the step, leaving every parameter as it was, and halves the scale; no FloatingPointError, and
    the method's buffers (IAL's reference norm, GradNorm's initial losses) stay finite."""
    trainer = STATrainer(amp_segnet_cfg(nyuv2, method, "full", tmp_path, max_iter=1, checkpoint_period=100))
    scaler = trainer._trainer.grad_scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 100)
    forward = trainer._trainer.forward
    monkeypatch.setattr(trainer._trainer, "forward", lambda inputs: {k: v * 1e20 for k, v in forward(inputs).items()})
    trainer.resume_or_load(resume=False)
    params = [p.detach().clone() for group in trainer.optimizer.param_groups for p in group["params"]]
    trainer.train()
    assert scaler.get_scale() == 2.0 ** 99
    after = [p for group in trainer.optimizer.param_groups for p in group["params"]]
    assert all(torch.equal(a, b) for a, b in zip(params, after))
    assert all(torch.isfinite(b).all() for b in trainer._trainer.weighting.buffers())


def test_non_finite_loss_still_stops_training(nyuv2, tmp_path, monkeypatch):
    trainer = STATrainer(amp_segnet_cfg(nyuv2, "PCGrad", "full", tmp_path, max_iter=2, checkpoint_period=100))
    trainer._trainer.grad_scaler = torch.amp.GradScaler("cpu")
    forward = trainer._trainer.forward
    monkeypatch.setattr(trainer._trainer, "forward",
                        lambda inputs: {k: v * float("inf") for k, v in forward(inputs).items()})
    trainer.resume_or_load(resume=False)
    with pytest.raises(FloatingPointError, match="iteration=0"):
        trainer.train()


def test_gradient_cosine_hook_measures_under_autocast_and_leaves_training_unchanged(nyuv2, tmp_path):
    from test_gradient_angles import segnet_cfg as angles_cfg, trained

    runs = []
    for period in (0, 1):
        cfg = angles_cfg(nyuv2, tmp_path / str(period), "full", max_iter=2)
        cfg.SOLVER.AMP.ENABLED = True
        runs.append(trained(cfg, period))
    plain, measured = (unwrap_model(t.model).state_dict() for t in runs)
    assert all(torch.equal(plain[k], measured[k]) for k in plain)
    cosines = runs[1].storage.histories()["grad/mean_pairwise_cosine"].values()
    assert len(cosines) == 2 and all(-1 <= c <= 1 for c, _ in cosines)
