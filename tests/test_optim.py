"""The training optimizer (fused Adam against torch's default twin, lazy correction, loading a checkpoint
written by the other implementation) and the gradient finite check against its elementwise twin."""

from __future__ import annotations

import copy

import pytest
import torch

from conftest import TINY_NET

from stylemri.config import DataConfig, RunConfig
from stylemri.data import load_dataset
from stylemri.training import presets
from stylemri.training.distributed import all_finite, all_finite_reference
from stylemri.training.optim import lazy_adam, load_optimizer_state
from stylemri.training.training_loop import Trainer

pytestmark = pytest.mark.usefixtures("one_thread")


def _params(seed: int = 0) -> list[torch.nn.Parameter]:
    g = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(s, generator=g)) for s in [(8, 4, 3, 3), (8,), (1,), (5, 7)]]


def _grads(params: list[torch.nn.Parameter], step: int) -> None:
    g = torch.Generator().manual_seed(100 + step)
    for p in params:
        p.grad = torch.randn(p.shape, generator=g) * (1 + step)


def _train(opt: torch.optim.Optimizer, params: list[torch.nn.Parameter], steps: range) -> None:
    for step in steps:
        _grads(params, step)
        opt.step()


def test_fused_adam_matches_the_default_implementation():
    a, b = _params(), _params()
    fused = lazy_adam(a, 0.0025, (0.0, 0.99), 1e-8, 16 / 17)
    default = lazy_adam(b, 0.0025, (0.0, 0.99), 1e-8, 16 / 17, fused=False)
    assert fused.param_groups[0]["fused"] is True and not default.param_groups[0]["fused"]
    _train(fused, a, range(30))
    _train(default, b, range(30))
    moved = sum(float((p.detach() - q.detach()).abs().max()) for p, q in zip(a, _params()))
    assert moved > 0.01  # the comparison below is over real updates, not over untouched tensors
    for p, q in zip(a, b):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)


def test_lazy_correction_of_lr_and_betas():
    group = lazy_adam(_params(), 0.002, (0.5, 0.99), 1e-8, 4 / 5).param_groups[0]
    assert group["lr"] == pytest.approx(0.002 * 0.8)
    assert group["betas"] == pytest.approx((0.5**0.8, 0.99**0.8))


@pytest.mark.parametrize("writer_fused", [False, True])
def test_loading_keeps_the_live_implementation_and_continues_exactly(writer_fused):
    a, b = _params(), _params()
    writer = lazy_adam(a, 0.0025, (0.0, 0.99), 1e-8, fused=writer_fused)
    _train(writer, a, range(10))
    saved = copy.deepcopy(writer.state_dict())  # as read back from a file: no storage shared with the writer
    with torch.no_grad():
        for p, q in zip(b, a):
            p.copy_(q)
    reader = lazy_adam(b, 0.0025, (0.0, 0.99), 1e-8, fused=not writer_fused)
    load_optimizer_state(reader, saved)
    assert bool(reader.param_groups[0]["fused"]) is (not writer_fused)
    _train(writer, a, range(10, 20))
    _train(reader, b, range(10, 20))
    for p, q in zip(a, b):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)


def test_trainer_uses_the_fused_kernel_unless_told_otherwise(tmp_path, monkeypatch):
    ds = load_dataset(DataConfig(resolution=16, cache_dir=str(tmp_path / "cache")))
    net, train = presets.resolve("auto", net={"resolution": 16, **TINY_NET},
                                 train={"batch": 8, "kimg": 0.016, "tick_kimg": 0.016, "num_workers": 0})
    cfg = RunConfig(data=ds.config, network=net, train=train, class_names=tuple(ds.class_names),
                    fingerprint=ds.fingerprint, num_images=len(ds), name="t")
    assert Trainer(cfg, tmp_path / "a", ds).opt_D.param_groups[0]["fused"] is True
    monkeypatch.setattr(Trainer, "fused_adam", False)
    assert not Trainer(cfg, tmp_path / "b", ds).opt_D.param_groups[0]["fused"]


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_all_finite_finds_one_bad_element(bad):
    x = torch.randn(10_000)
    assert all_finite(x) and all_finite_reference(x)
    for index in (0, 4_321, 9_999):
        y = x.clone()
        y[index] = bad
        assert not all_finite(y) and not all_finite_reference(y)
    both = x.clone()
    both[3], both[7] = float("inf"), float("-inf")  # the sum is nan, not a cancelled finite value
    assert not all_finite(both)


def test_all_finite_when_the_sum_of_finite_values_overflows():
    x = torch.full((4,), 3e38)
    assert not torch.isfinite(x.sum())  # the case the elementwise check decides
    assert all_finite(x) and all_finite_reference(x)
    assert all_finite(torch.empty(0))
