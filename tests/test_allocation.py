"""Property tests of the allocation policies."""
import io
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sta_d2.allocation import (
    FullTaskPolicy,
    InterleavedPolicy,
    ISTAPolicy,
    StochasticPolicy,
    TaskAssignment,
    allocation_generator,
    build_allocation_policy,
)
from sta_d2 import STAConfigError, add_sta_config, validate_sta_config

TASK_NAMES = ("det", "mask", "sem_seg", "depth", "normal")
sizes = st.tuples(st.integers(1, 5), st.integers(1, 8)).flatmap(  # (T, N, K)
    lambda tn: st.tuples(st.just(tn[0]), st.just(tn[1]), st.integers(1, tn[0]))
)


class BatchStream:
    """Batches of ``n`` distinct dicts; remembers how many were drawn."""

    def __init__(self, n):
        self.n, self.drawn = n, 0

    def __call__(self):
        self.drawn += 1
        return [{"batch": self.drawn - 1, "image": i} for i in range(self.n)]


def take(policy, stream, steps):
    return [policy.next_step(stream) for _ in range(steps)]


@settings(max_examples=60, deadline=None)
@given(sizes, st.integers(0, 2**31 - 1))
def test_sta_gives_each_image_exactly_k_tasks_and_covers_tasks(tnk, seed):
    t, n, k = tnk
    policy = StochasticPolicy(TASK_NAMES[:t], k, allocation_generator(seed, 0))
    for _, a in take(policy, BatchStream(n), 5):
        assert a.mask.sum(dim=1).tolist() == [k] * n
        if n * k >= t:
            assert a.mask.any(dim=0).all()


def test_sta_without_cover_can_leave_a_task_empty():
    policy = StochasticPolicy(TASK_NAMES[:3], 1, allocation_generator(0, 0), cover_all_tasks=False)
    steps = take(policy, BatchStream(3), 200)
    assert any(not a.mask.any(dim=0).all() for _, a in steps)


def test_sta_draws_are_uniform_over_tasks():
    policy = StochasticPolicy(TASK_NAMES[:3], 1, allocation_generator(0, 0), cover_all_tasks=False)
    counts = sum(a.mask.sum(dim=0) for _, a in take(policy, BatchStream(10), 300)).float()
    assert torch.allclose(counts / counts.sum(), torch.full((3,), 1 / 3), atol=0.02)


@settings(max_examples=60, deadline=None)
@given(sizes, st.integers(1, 3), st.integers(0, 2**31 - 1))
def test_interleaved_covers_each_task_exactly_once_per_cycle(tnk, gap, seed):
    t, n, k = tnk
    policy = InterleavedPolicy(TASK_NAMES[:t], k, allocation_generator(seed, 0), gap=gap)
    cycle = math.ceil(t / k)
    assert policy.steps_per_batch == cycle
    stream = BatchStream(n)
    for group in range(2):
        steps = take(policy, stream, gap * cycle)
        assert stream.drawn == gap * (group + 1)  # `gap` new batches per group, none in between
        for j in range(gap):
            visits = steps[j::gap]  # batch j of the group is revisited every `gap` steps
            assert all(b is visits[0][0] for b, _ in visits)
            used = torch.stack([a.mask for _, a in visits]).sum(dim=0)
            assert torch.equal(used, torch.ones(n, t, dtype=torch.long))
            per_visit = [a.mask.sum(dim=1).tolist() for _, a in visits]
            assert per_visit == [[min(k, t - r * k)] * n for r in range(cycle)]


def test_ista_is_gap_one():
    a = take(ISTAPolicy(TASK_NAMES[:3], 1, allocation_generator(5, 0)), BatchStream(4), 9)
    b = take(InterleavedPolicy(TASK_NAMES[:3], 1, allocation_generator(5, 0), gap=1), BatchStream(4), 9)
    assert all(torch.equal(x.mask, y.mask) for (_, x), (_, y) in zip(a, b))


def test_full_policy_allocates_everything():
    for batch, a in take(FullTaskPolicy(TASK_NAMES[:2], 1, allocation_generator(0, 0)), BatchStream(3), 3):
        assert a.mask.all() and len(batch) == 3


@pytest.mark.parametrize("cls", [StochasticPolicy, ISTAPolicy])
def test_same_seed_same_draws_other_rank_other_draws(cls):
    def draws(seed, rank):
        policy = cls(TASK_NAMES[:3], 1, allocation_generator(seed, rank))
        return torch.stack([a.mask for _, a in take(policy, BatchStream(6), 12)])

    assert torch.equal(draws(3, 0), draws(3, 0))
    assert not torch.equal(draws(3, 0), draws(3, 1))
    assert not torch.equal(draws(3, 0), draws(4, 0))


def roundtrip(state):
    """Through torch.save / torch.load(weights_only=True), as a checkpoint would go."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


@settings(max_examples=40, deadline=None)
@given(sizes, st.integers(1, 3), st.integers(0, 20), st.sampled_from(["sta", "gap", "full"]))
def test_resume_draws_what_an_uninterrupted_run_draws(tnk, gap, stop, name):
    t, n, k = tnk

    def make():
        generator = allocation_generator(11, 0)
        if name == "sta":
            return StochasticPolicy(TASK_NAMES[:t], k, generator)
        if name == "gap":
            return InterleavedPolicy(TASK_NAMES[:t], k, generator, gap=gap)
        return FullTaskPolicy(TASK_NAMES[:t], k, generator)

    uninterrupted = [a.mask for _, a in take(make(), BatchStream(n), stop + 10)]
    first = make()
    take(first, BatchStream(n), stop)
    resumed = make()
    resumed.load_state_dict(roundtrip(first.state_dict()))
    after = [a.mask for _, a in take(resumed, BatchStream(n), 10)]
    assert all(torch.equal(x, y) for x, y in zip(uninterrupted[stop:], after))


def test_assignment_travels_with_inputs():
    a = TaskAssignment(("det", "mask"), torch.tensor([[True, False], [False, True], [True, True]]))
    inputs = a.attach([{"image": i} for i in range(3)])
    assert [x["sta_tasks"] for x in inputs] == [("det",), ("mask",), ("det", "mask")]
    back = TaskAssignment.from_inputs(inputs, ("det", "mask"))
    assert torch.equal(back.mask, a.mask)
    assert back.images("mask") == [1, 2] and back.counts() == {"det": 2, "mask": 2}
    assert TaskAssignment.from_inputs([{"image": 0}], ("det", "mask")).mask.all()
    with pytest.raises(ValueError, match="unknown task"):
        TaskAssignment.from_inputs([{"sta_tasks": ("depth",)}], ("det", "mask"))


def test_k_larger_than_model_tasks_names_the_key():
    from detectron2.config import get_cfg

    cfg = get_cfg()
    add_sta_config(cfg)
    cfg.MODEL.META_ARCHITECTURE = "STAGeneralizedRCNN"
    cfg.MODEL.PROPOSAL_GENERATOR.NAME, cfg.MODEL.ROI_HEADS.NAME = "STARPN", "STAROIHeads"
    cfg.MODEL.MASK_ON = True
    cfg.STA.POLICY, cfg.STA.TASKS_PER_IMAGE = "sta", 3
    with pytest.raises(STAConfigError, match=r"^cfg\.STA\.TASKS_PER_IMAGE = 3: exceeds the number of tasks \(det, mask"):
        validate_sta_config(cfg)
    cfg.STA.TASKS_PER_IMAGE = 2
    validate_sta_config(cfg)
    assert build_allocation_policy(cfg, ("det", "mask"), rank=0).k == 2
