"""ADA augmentation at NVlabs' 'bgc' standard: exactness, anti-aliasing, gradients, determinism, ADA warning."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F

from stylemri.config import DataConfig
from stylemri.data import load_dataset
from stylemri.training import augment as A
from stylemri.training.rng import BatchRandom

from conftest import phantom


def _images(n: int = 8, size: int = 16, seed: int = 0) -> torch.Tensor:
    """MRI-like phantoms in [-1, 1] (black background) with fine texture, all different."""
    x = torch.stack([torch.from_numpy(phantom(size, size, seed + i)) for i in range(n)])[:, None]
    return x * 2 - 1


@pytest.fixture(scope="module")
def mni64() -> torch.Tensor:
    ds = load_dataset(DataConfig(source="builtin:mni152", resolution=64))
    return ds.batch(list(range(len(ds))))[0]


# ---- identity and exact whole-pixel operations ---------------------------------------------------------
def test_p0_is_exact_identity():
    x = _images()
    for spec in ("bgc", "bgcfnc"):
        assert A.AugmentPipe(spec)(x, 0.0, BatchRandom(0, 8)) is x


def test_untouched_images_pass_exactly_at_small_p():
    x = _images(32)
    y = A.AugmentPipe("bgc")(x, 0.05, BatchRandom(3, 32))
    same = [(y[i] - x[i]).abs().max().item() < 1e-6 for i in range(32)]
    assert 0 < sum(same) < 32  # some images drew no operation and are returned bit-for-bit (within 1e-6)


@pytest.mark.parametrize("p", [0.05, 0.3, 1.0])
def test_only_changed_images_are_resampled_as_the_whole_batch_twin_would(p):
    # The fast path resamples only images whose transform is not the identity; the reference twin runs every
    # geometric stage on the whole batch. Same draws, so the same images and gradients (R1 needs the latter),
    # up to what resampling an identity costs in the twin: sym6's 2x up / 2x down round trip reconstructs the
    # image to ~4e-7 (in float64 too: the tabulated taps are not exactly orthogonal), 0.0001 of a grey level.
    x = _images(32).double().requires_grad_(True)
    fast, whole = A.AugmentPipe("bgc"), A.AugmentPipe("bgc", only_changed=False)
    y, y_ref = fast(x, p, BatchRandom(4, 32)), whole(x, p, BatchRandom(4, 32))
    assert (y - y_ref).abs().max() < 1e-6
    v = torch.randn_like(y)
    (g,), (g_ref,) = (torch.autograd.grad((o * v).sum(), x) for o in (y, y_ref))
    assert (g - g_ref).abs().max() < 1e-5
    untouched = [i for i in range(32) if torch.equal(y[i], x[i])]
    assert (len(untouched) > 0) == (p < 1)  # at small p some images pass bit for bit, at p = 1 none


def test_xflip_is_exact_and_happens():
    x = _images(16)
    y = A.AugmentPipe(("xflip",))(x, 1.0, BatchRandom(1, 16))
    kept = [torch.allclose(y[i], x[i], atol=1e-6) for i in range(16)]
    flipped = [torch.allclose(y[i], x[i].flip(-1), atol=1e-6) for i in range(16)]
    assert all(k or f for k, f in zip(kept, flipped))
    assert sum(flipped) >= 4 and sum(kept) >= 4  # p = 1: each image flips with probability 1/2


def test_rotate90_is_exact_and_happens():
    x = _images(16)
    y = A.AugmentPipe(("rotate90",))(x, 1.0, BatchRandom(2, 16))
    turns = []
    for i in range(16):
        match = [k for k in range(4) if torch.allclose(y[i], torch.rot90(x[i], k, (1, 2)), atol=1e-6)]
        assert len(match) == 1
        turns.append(match[0])
    assert len(set(turns)) >= 3


def _shifted(img: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    h, w = img.shape[-2:]
    ref = torch.full_like(img, -1.0)  # black enters from outside
    ref[:, max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = img[:, max(-dy, 0):h + min(-dy, 0),
                                                                       max(-dx, 0):w + min(-dx, 0)]
    return ref


def test_integer_translation_is_exact_and_happens():
    x = _images(12)
    y = A.AugmentPipe(("xint",))(x, 1.0, BatchRandom(3, 12))
    shifts = []
    for i in range(12):
        hits = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)
                if torch.allclose(_shifted(x[i], dy, dx), y[i], atol=1e-6)]
        assert len(hits) == 1
        shifts.append(hits[0])
    assert sum(s != (0, 0) for s in shifts) >= 6


def test_warp_of_identity_and_whole_pixel_moves_reconstructs():
    """The sym6 up/down pair reconstructs exactly: the anti-aliased warp itself loses nothing."""
    x = _images(4, 24)
    n, ref = 4, torch.zeros(4)
    cases = {"identity": (torch.eye(3).repeat(n, 1, 1), x),
             "shift": (A._translate(-3.0, 2.0, ref), _shifted_batch(x, -2, 3))}
    for name, (g, want) in cases.items():
        y = A.warp(x, g, A.pad_margins(g, 24, 24, 3))
        assert (y - want).abs().max() < 1e-5, name


def _shifted_batch(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    return torch.stack([_shifted(img, dy, dx) for img in x])


def test_fast_resampling_equals_upfirdn2d_reference():
    f = torch.tensor(A.SYM6, dtype=torch.float64)
    f = f / f.sum()
    x = torch.randn(2, 1, 13, 18, dtype=torch.float64)
    assert torch.allclose(A.upsample_2x(x, f), A.upsample_2x_reference(x, f), atol=1e-12)
    y = torch.randn(2, 1, 38, 41, dtype=torch.float64)
    for crop in (0, 6):
        assert torch.allclose(A.downsample_2x(y, f, crop), A.downsample_2x_reference(y, f, crop), atol=1e-12)


# ---- padding -----------------------------------------------------------------------------------------
def test_black_padding_keeps_the_field_of_view_black():
    x = _images(2, 32)
    g = A._scale(torch.full((2,), 1.6), torch.full((2,), 1.6), torch.zeros(2))  # zoom out: outside enters
    margins = A.pad_margins(g, 32, 32, 3)
    black = A.warp(x, g, margins, pad="black")
    reflect = A.warp(x, g, margins, pad="reflect")
    ring = torch.ones(32, 32, dtype=torch.bool)
    ring[4:-4, 4:-4] = False  # the outer 4 pixels map to outside the original image
    assert black[:, :, ring].sub(-1).abs().max() < 0.02  # background stays background
    assert reflect[:, :, ring].sub(-1).abs().max() > 0.3  # mirrored brain tissue pasted in


# ---- colour, filter, noise, cutout -------------------------------------------------------------------
def test_color_is_a_per_image_affine_map_and_lumaflip_negates():
    x = _images(16)
    y = A.AugmentPipe(("brightness", "contrast"))(x, 1.0, BatchRandom(4, 16))
    for i in range(16):
        a = torch.stack([x[i].flatten(), torch.ones(x[i].numel())], 1)
        coef = torch.linalg.lstsq(a, y[i].flatten()[:, None]).solution
        assert torch.allclose(a @ coef, y[i].flatten()[:, None], atol=1e-5)
    y = A.AugmentPipe(("lumaflip",))(x, 1.0, BatchRandom(5, 16))
    neg = [torch.equal(y[i], -x[i]) for i in range(16)]
    assert all(neg[i] or torch.equal(y[i], x[i]) for i in range(16)) and 4 <= sum(neg) <= 12


def test_filter_bank_splits_an_impulse_and_unit_gains_are_identity():
    bank = A.filter_bank()
    impulse = torch.zeros(bank.shape[1])
    impulse[bank.shape[1] // 2] = 1
    assert torch.allclose(bank.sum(0), impulse, atol=1e-6)
    x = _images(4)
    y = A.AugmentPipe(("imgfilter",), imgfilter_std=0.0)(x, 1.0, BatchRandom(6, 4))
    assert torch.allclose(y, x, atol=1e-5)
    z = A.AugmentPipe(("imgfilter",))(x, 1.0, BatchRandom(6, 4))
    assert (z - x).abs().amax(dim=(1, 2, 3)).min() > 1e-2


def test_noise_and_cutout():
    x = _images(16)
    y = A.AugmentPipe(("noise",))(x, 1.0, BatchRandom(7, 16))
    std = (y - x).std(dim=(1, 2, 3))
    assert std.max() > 0.02 and std.max() < 0.6
    y = A.AugmentPipe(("cutout",))(x, 1.0, BatchRandom(8, 16))
    for i in range(16):
        changed = y[i] != x[i]
        assert changed.any() and (y[i][changed] == 0).all()  # a grey (0) box, the rest untouched


def test_pipe_specs():
    assert set(A.PIPE_SPECS) >= {"bgc", "bgcf", "bgcfn", "bgcfnc"}
    bgc = A.augment_spec("bgc")
    assert bgc.lumaflip == 1 and bgc.rotate90 == 1 and bgc.imgfilter == 0 and bgc.noise == 0 and bgc.cutout == 0
    assert A.augment_spec("bgcfn").noise == 1 and A.augment_spec("bgcfn").cutout == 0
    assert A.build_augment("ada").spec == bgc and A.build_augment("none") is None
    for bad in ("bgcx", ("translate",)):
        with pytest.raises(ValueError):
            A.augment_spec(bad)
    with pytest.raises(ValueError, match="padding"):
        A.augment_spec("bgc", pad="wrap")


# ---- shape, dtype, range, gradients, determinism --------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_shape_dtype_range(dtype):
    x = _images(8, 24).to(dtype)
    y = A.AugmentPipe("bg")(x, 1.0, BatchRandom(9, 8))
    assert y.shape == x.shape and y.dtype == dtype and torch.isfinite(y).all()
    assert y.min() > -1.5 and y.max() < 1.5  # geometry moves values, filter ringing stays small
    y = A.AugmentPipe("bgcfnc")(x, 1.0, BatchRandom(9, 8))
    assert y.shape == x.shape and y.dtype == dtype and torch.isfinite(y).all()


def test_gradients_are_exact_and_flow_through_every_group():
    # For fixed random draws the pipe is affine in x, so f(x + u) - f(x) = J u exactly: compare with autograd.
    x = (torch.rand(2, 1, 8, 8, dtype=torch.float64) * 2 - 1).requires_grad_(True)
    u, v = torch.randn_like(x), torch.randn_like(x)
    pipe = A.AugmentPipe("bgcfnc")
    y = pipe(x, 1.0, BatchRandom(10, 2))
    (vjp,) = torch.autograd.grad((y * v).sum(), x)
    jvp = pipe(x.detach() + u, 1.0, BatchRandom(10, 2)) - y.detach()
    assert vjp.abs().sum() > 0 and torch.allclose((vjp * u).sum(), (jvp * v).sum(), rtol=1e-9)
    w = torch.randn(1, 1, 3, 3, dtype=torch.float64, requires_grad=True)  # R1: a double backward through it
    out = F.conv2d(pipe(x, 1.0, BatchRandom(10, 2)), w)
    (grad,) = torch.autograd.grad(out.square().sum(), x, create_graph=True)
    grad.square().sum().backward()
    assert w.grad is not None and torch.isfinite(w.grad).all() and w.grad.abs().sum() > 0


def test_deterministic_from_the_generator_and_rank_sliced():
    x = _images(8)
    pipe = A.AugmentPipe("bgcfn")
    a, b = pipe(x, 0.7, BatchRandom(11, 8)), pipe(x, 0.7, BatchRandom(11, 8))
    assert torch.equal(a, b)
    assert not torch.allclose(a, pipe(x, 0.7, BatchRandom(12, 8)))
    halves = [pipe(x[r * 4:(r + 1) * 4], 0.7, BatchRandom(11, 8, offset=r * 4, count=4)) for r in range(2)]
    assert torch.allclose(torch.cat(halves), a, atol=1e-6)  # two ranks == one process


# ---- anti-aliasing: the spectral test ---------------------------------------------------------------
def test_radial_bands_are_defined_as_documented():
    x = torch.zeros(1, 1, 16, 16)
    x[0, 0, :, ::2] = 1  # a column pattern at fx = 0.5: DC plus the top band only
    power = A.radial_band_power(x)
    assert power[0, 1] == 0 and power[0, 2] == 0 and power[0, 0] > 0 and power[0, 3] > 0
    y = _images(4)
    assert A.band_power_kept(y, y) == [1.0, 1.0, 1.0, 1.0]
    blurred = F.avg_pool2d(y, 3, stride=1, padding=1, count_include_pad=False)
    kept = A.band_power_kept(y, blurred)
    assert kept[3] < kept[2] < kept[1] < kept[0] <= 1.0  # a blur loses most at the top


def _one_bilinear_resample(x: torch.Tensor, g_inv: torch.Tensor) -> torch.Tensor:
    """The pre-bgc pipeline: the same matrices applied by one bilinear grid_sample at 1x."""
    n, c, h, w = x.shape
    ref = g_inv[:, 0, 0]
    g = A._scale(2 / w, 2 / h, ref) @ g_inv @ A._scale(w / 2, h / 2, ref)
    grid = F.affine_grid(g[:, :2, :], [n, c, h, w], align_corners=False)
    return F.grid_sample(x + 1, grid, mode="bilinear", padding_mode="zeros", align_corners=False) - 1


def test_scale_and_rotate_keep_high_frequencies(mni64):
    """builtin:mni152 at 64 px, p = 1 for scale and rotate: median over images of the power kept in
    the two highest of 4 radial bands. NVlabs' pipeline keeps 0.86 / 0.60 here, one bilinear resampling
    0.55 / 0.35; the bar is NVlabs' figure of the issue, 0.84 / 0.60."""
    x = mni64
    assert x.shape[1:] == (1, 64, 64) and len(x) > 100
    spec = A.augment_spec(("scale", "rotate"))
    kept = A.band_power_kept(x, A.AugmentPipe(spec)(x, 1.0, BatchRandom(0, len(x))))
    assert kept[2] >= 0.84 and kept[3] >= 0.60, kept
    _, g = A.geometry(spec, BatchRandom(0, len(x)), 1.0, 64, 64)
    baseline = A.band_power_kept(x, _one_bilinear_resample(x, g))
    assert baseline[2] < 0.84 and baseline[3] < 0.60, baseline  # the test tells the two apart


# ---- ADA controller --------------------------------------------------------------------------------------
def test_ada_warns_once_when_p_passes_0_8():
    ada = A.AdaController(p=0.75, target=0.6, interval=1, ada_kimg=0.1)  # +0.01 p per update at batch 1
    events = []
    for _ in range(10):
        ada.accumulate(torch.ones(4, 1))  # D overfits: r_t = 1, p rises
        ada.step(batch=1)
        events += ada.pop_events()
    assert ada.p == pytest.approx(0.85)
    assert len(events) == 1 and events[0]["event"] == "ada_warning" and "0.8" in events[0]["warning"]
    assert 0.8 < events[0]["p"] <= 0.81 + 1e-9 and ada.pop_events() == []
    low = A.AdaController(p=0.1, interval=1, ada_kimg=0.1)
    for _ in range(5):
        low.accumulate(torch.ones(4, 1))
        low.step(batch=1)
    assert low.pop_events() == [] and math.isclose(low.p, 0.15)


def test_training_run_logs_the_ada_warning(tmp_path):
    from stylemri.config import RunConfig
    from stylemri.training import presets
    from stylemri.training.training_loop import Callbacks, Trainer

    ds = load_dataset(DataConfig(resolution=16))
    net = {"resolution": 16, "channel_base": 128, "channel_max": 16, "z_dim": 16, "w_dim": 16}
    train = {"batch": 8, "kimg": 0.032, "tick_kimg": 0.016, "num_workers": 0, "aug": "ada", "aug_p": 0.75,
             "ada_interval": 1, "ada_kimg": 0.08, "augpipe": "bgcfn"}  # p moves 0.1 per step
    net_cfg, train_cfg = presets.resolve("auto", net=net, train=train)
    cfg = RunConfig(data=ds.config, network=net_cfg, train=train_cfg, class_names=tuple(ds.class_names),
                    fingerprint=ds.fingerprint, num_images=len(ds), name="t")
    events: list[dict] = []

    class Rec(Callbacks):
        def event(self, event):
            events.append(event)

    trainer = Trainer(cfg, tmp_path, ds, callbacks=Rec())
    assert trainer.augment.spec == A.augment_spec("bgcfn")
    trainer.ada.target = -1.0  # any r_t > -1 raises p: it crosses 0.8 at the first update
    trainer.run()
    warnings = [e for e in events if e["event"] == "ada_warning"]
    assert len(warnings) == 1 and warnings[0]["kimg"] == 0.0 and warnings[0]["p"] == pytest.approx(0.85)
    logged = [json.loads(line) for line in (tmp_path / "stats.jsonl").read_text().splitlines()]
    assert [e["p"] for e in logged if e["event"] == "ada_warning"] == [warnings[0]["p"]]


def test_cli_rejects_an_unknown_augpipe(tmp_path, capsys):
    from stylemri import cli

    with pytest.raises(SystemExit) as e:
        raise SystemExit(cli.main(["train", "--out", str(tmp_path / "runs"), "--quiet", "--resolution", "16",
                                   "--augpipe", "bgcx"]))
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1 and "--augpipe bgcx" in err[0] and "bgcfn" in err[0]
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
