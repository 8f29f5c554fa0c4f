"""Library layer of issue 5 (generate + analysis) on tiny randomly initialised networks: parsing,
writers, exactness of the conversions, the maths (slerp, MS-SSIM, cosine/silhouette), and the
generator-driven tools. The end-to-end commands on a trained run are in test_use_cli.py."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from stylemri import write_generated as gen
from stylemri import io
from stylemri.model import TrainedModel
from stylemri.networks import sampling as smp
from stylemri.analysis import compare, edit, embed, interpolate, mixing, project, ssim
from stylemri.config import NetworkConfig
from stylemri.errors import UserError

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def nets():
    from stylemri.networks import build_discriminator, build_generator

    torch.manual_seed(0)
    cfg = NetworkConfig(arch="stylegan2", resolution=16, c_dim=2, z_dim=16, w_dim=16, channel_base=128,
                        channel_max=16, map_layers=2)
    G, D = build_generator(cfg).eval(), build_discriminator(cfg).eval()
    with torch.no_grad():  # a meaningful w_avg, as training leaves it
        G.mapping(torch.randn(512, 16), smp.one_hot([0, 1] * 256, 2), update_w_avg=True)
        G.mapping.w_avg.copy_(G.mapping(torch.randn(2048, 16), smp.one_hot([0, 1] * 1024, 2))[:, 0].mean(0))
    return G, D


# ------------------------------------------------------------------------------------------- parsing


def test_parse_seeds():
    assert gen.parse_seeds("0-3,42") == [0, 1, 2, 3, 42]
    assert gen.parse_seeds(" 7 ") == [7]
    assert gen.parse_seeds("2..4,3") == [2, 3, 4]
    for bad in ("", "a", "3-1", "1,x", "-5", ",", "1-2-3", str(2**32)):
        with pytest.raises(UserError, match="seeds"):
            gen.parse_seeds(bad)


def images(G, samples, psi=1.0, noise="const", batch=32):
    """The generate command's images for planned samples: one per (seed, class)."""
    return smp.generate_images(G, [s.seed for s in samples], [s.class_index for s in samples], psi=psi, noise=noise,
                               batch=batch)


def test_seed_latents_match_nvlabs_convention():
    z = smp.seed_latents([0, 5], 8)
    assert z.dtype == torch.float32 and z.shape == (2, 8)
    assert np.allclose(z[1].numpy(), np.random.RandomState(5).randn(8).astype(np.float32))


def test_class_index(nets):
    G, _ = nets
    model = TrainedModel(G=G, config=None, class_names=("NC", "AD"), checkpoint=Path("ckpt.json"), kimg=0.0,
                         device=torch.device("cpu"))  # type: ignore[arg-type]
    assert model.class_index("AD") == 1 and model.class_index("ad") == 1 and model.class_index(0) == 0
    assert model.class_index(None) is None
    with pytest.raises(UserError, match="no such class.*NC, AD"):
        model.class_index("MCI")
    assert model.classes_for([4, 5], None) == [0, 1]  # no class: seed s gets class s mod 2
    assert torch.equal(model.generate([5], class_name="AD"), images(G, [gen.Sample(5, 1, "AD")]))
    with pytest.raises(TypeError, match="sequence of seeds"):
        model.generate(3)
    G0 = type(G).__new__(type(G))
    G0.c_dim = 0
    with pytest.raises(UserError, match="unconditional"):
        TrainedModel(G=G0, config=None, class_names=(), checkpoint=Path("c.json"), kimg=0.0,  # type: ignore[arg-type]
                     device=torch.device("cpu")).class_index("AD")


def test_parse_styles():
    assert mixing.style_groups(10, 64) == {"coarse": [0, 1, 2, 3], "middle": [4, 5, 6, 7], "fine": [8, 9]}
    assert mixing.style_groups(18, 1024)["fine"] == list(range(8, 18))
    assert mixing.parse_styles("fine", 6, 16) == [4, 5]  # below 64 px: thirds
    assert mixing.parse_styles("0-2,5", 6, 16) == [0, 1, 2, 5]
    for bad in ("6", "x", "3-1", "0-9"):
        with pytest.raises(UserError, match="--layers"):
            mixing.parse_styles(bad, 6, 16)


def test_parse_steps_and_direction():
    assert edit.parse_steps("-3..3") == [-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0]
    assert edit.parse_steps("-1..1:0.5") == [-1.0, -0.5, 0.0, 0.5, 1.0]
    assert edit.parse_steps("-2,0,2.5") == [-2.0, 0.0, 2.5]
    for bad in ("3..-3", "a..b", "", "1..2:0"):
        with pytest.raises(UserError, match="--multiples"):
            edit.parse_steps(bad)
    def lookup(names):
        def find(name):
            if name not in names:
                raise UserError(f"--class {name}: the model has no such class")
            return names.index(name)
        return find

    assert edit.parse_direction("AD-NC", ["NC", "AD"], 2, lookup(["NC", "AD"])) == (1, 0)
    assert edit.parse_direction("AD-early-MCI", ["AD", "early-MCI"], 2, lookup(["AD", "early-MCI"])) == (0, 1)
    with pytest.raises(UserError, match="no such class"):
        edit.parse_direction("AD-MCI", ["NC", "AD"], 2, lookup(["NC", "AD"]))
    with pytest.raises(UserError, match="unconditional"):
        edit.parse_direction("AD-NC", [], 0, lookup([]))
    with pytest.raises(UserError, match="different"):
        edit.parse_direction("AD-AD", ["NC", "AD"], 2, lookup(["NC", "AD"]))


# ------------------------------------------------------------------------------------------- writers


def test_writers_exact(tmp_path):
    img = torch.tensor([[[-1.2, -1.0, -0.5], [0.0, 0.5, 1.0], [1.5, 0.25, -0.25]]])  # (1, 3, 3)
    p8 = gen.write_png(tmp_path / "a.png", img)
    assert np.array_equal(np.asarray(Image.open(p8)), io.to_uint8(img)[0])
    assert np.asarray(Image.open(p8))[0].tolist() == [0, 0, 64]
    p16 = gen.write_png(tmp_path / "b.png", img, bits=16)
    assert np.array_equal(np.asarray(Image.open(p16)).astype(np.uint16), io.to_uint16(img)[0])
    pn = gen.write_npy(tmp_path / "c.npy", img.numpy())
    assert np.array_equal(np.load(pn), img.numpy())


def test_nifti_volume_orientation(tmp_path):
    nib = pytest.importorskip("nibabel")
    imgs = torch.rand(3, 1, 4, 5) * 2 - 1  # N=3 slices of H=4, W=5
    path = gen.write_nifti(tmp_path / "v.nii.gz", imgs)
    vol = np.asarray(nib.load(str(path)).dataobj)
    assert vol.shape == (5, 4, 3) and vol.dtype == np.float32
    for k in range(3):
        for y in range(4):
            for x in range(5):
                assert vol[x, 3 - y, k] == pytest.approx(float(imgs[k, 0, y, x]))
    assert gen.write_nifti(tmp_path / "w.nii.gz", imgs).read_bytes() == path.read_bytes()  # no timestamps


def test_write_samples_layout(tmp_path):
    samples = gen.plan_samples([1, 2, 3], None, ["NC", "AD"], 2)
    assert [s.stem for s in samples[:2]] == ["seed0001_NC", "seed0002_NC"] and len(samples) == 6
    imgs = torch.zeros(6, 1, 8, 8)

    def images_of(part):
        return imgs[:len(part)]

    written = gen.write_samples(tmp_path, samples, images_of, "png", chunk=4)
    assert {p.name for p in written} >= {"seed0003_AD.png", "grid.png", "index.csv"}
    grid = np.asarray(Image.open(tmp_path / "grid.png"))
    assert grid.shape == (2 * 10 + 2, 3 * 10 + 2)  # one row per class
    rows = list(csv.DictReader(open(tmp_path / "index.csv")))
    assert rows[4] == {"file": "seed0002_AD.png", "slice": "", "seed": "2", "class": "AD"}
    gen.write_samples(tmp_path / "n", samples, images_of, "nifti", chunk=4)
    assert (tmp_path / "n" / "volume.nii.gz").is_file()
    with pytest.raises(UserError, match="--format"):
        gen.write_samples(tmp_path, samples, images_of, "jpeg")


def test_class_names_that_look_alike_keep_distinct_files(tmp_path):
    """Issue 12.5: ÄD and ÖD once both became seed0000__D.png; names stay distinct, Unicode kept."""
    assert gen.class_stems(["ÄD", "ÖD", "a/b"]) == ["ÄD", "ÖD", "a_b"]
    assert gen.class_stems(["a b", "a_b", "AD", "ad"]) == ["a_b-c0", "a_b-c1", "AD-c2", "ad-c3"]
    samples = gen.plan_samples([0, 1], None, ["ÄD", "ÖD"], 2)
    written = gen.write_samples(tmp_path, samples, lambda part: torch.zeros(len(part), 1, 4, 4), "png")
    rows = list(csv.DictReader(open(tmp_path / "index.csv", encoding="utf-8")))
    assert len({r["file"] for r in rows}) == 4 and all((tmp_path / r["file"]).is_file() for r in rows)
    assert {r["class"] for r in rows} == {"ÄD", "ÖD"} and len(written) == 6


def test_write_samples_streams_in_chunks(tmp_path):
    """Memory stays flat with N: images are asked for (and written) a chunk at a time, the grid is capped."""
    samples = gen.plan_samples(range(600), None, [], 0)
    asked = []

    def images_of(part):
        asked.append(len(part))
        return torch.full((len(part), 1, 4, 4), -1.0)

    gen.write_samples(tmp_path, samples, images_of, "png", chunk=128)
    assert asked == [128, 128, 128, 128, 88] and len(list(tmp_path.glob("seed*.png"))) == 600
    grid = np.asarray(Image.open(tmp_path / "grid.png"))
    assert grid.shape == (16 * 6 + 2, 16 * 6 + 2)  # the first 256 seeds, 16 x 16 tiles of 4 + 2 px
    assert sum(1 for _ in open(tmp_path / "index.csv")) == 601
    with pytest.raises(UserError, match="at most"):
        gen.seeds_from_num(gen.MAX_IMAGES + 1)


def test_streamed_nifti_equals_nibabel(tmp_path):
    nib = pytest.importorskip("nibabel")
    imgs = torch.rand(5, 3, 4, 6) * 2 - 1
    ref = nib.Nifti1Image(gen.images_to_volume(imgs), np.eye(4))
    ref.header["cal_min"], ref.header["cal_max"] = -1.0, 1.0
    ref.header.set_xyzt_units("mm")
    path = gen.write_nifti(tmp_path / "v.nii", imgs)
    assert path.read_bytes() == ref.to_bytes() and not list(tmp_path.glob(".*tmp"))


# ---------------------------------------------------------------------------------------------- maths


def _ssim_reference(x: np.ndarray, y: np.ndarray, data_range: float = 2.0) -> float:
    """Textbook SSIM, written independently: 11x11 Gaussian (sigma 1.5), valid region, mean."""
    from scipy.signal import correlate2d

    t = np.arange(11) - 5.0
    g = np.exp(-t**2 / (2 * 1.5**2))
    win = np.outer(g, g) / np.outer(g, g).sum()
    f = lambda a: correlate2d(a, win, mode="valid")  # noqa: E731
    mx, my = f(x), f(y)
    vx, vy, cxy = f(x * x) - mx**2, f(y * y) - my**2, f(x * y) - mx * my
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    return float((((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))).mean())


def test_ssim_matches_reference_and_ms_ssim_orders():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 1, 32, 32, generator=g, dtype=torch.float64) * 2 - 1
    y = (x + 0.3 * torch.randn(x.shape, generator=g, dtype=torch.float64)).clamp(-1, 1)
    assert float(ssim.ssim(x, y)) == pytest.approx(_ssim_reference(x[0, 0].numpy(), y[0, 0].numpy()), abs=1e-10)
    assert float(ssim.ms_ssim(x, x)) == pytest.approx(1.0, abs=1e-9)
    z = (x + 0.6 * torch.randn(x.shape, generator=g, dtype=torch.float64)).clamp(-1, 1)
    assert 0 < float(ssim.ms_ssim(x, z)) < float(ssim.ms_ssim(x, y)) < 1
    assert ssim.num_scales(256) == 5 and ssim.num_scales(16) == 3 and ssim.num_scales(8) == 2
    xs = torch.rand(2, 1, 8, 8, requires_grad=True)
    ssim.ms_ssim(xs, torch.zeros(2, 1, 8, 8)).sum().backward()  # works at 8 px, finite gradients
    assert torch.isfinite(xs.grad).all()


def test_slerp_properties():
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(64, generator=g), torch.randn(64, generator=g) * 2
    assert torch.allclose(interpolate.slerp(a, b, 0.0), a, atol=1e-5)
    assert torch.allclose(interpolate.slerp(a, b, 1.0), b, atol=1e-5)
    omega = torch.arccos(torch.dot(a, b) / (a.norm() * b.norm()))
    mid = interpolate.slerp(a, b, 0.3)
    ang = torch.arccos(torch.dot(a, mid) / (a.norm() * mid.norm()))
    assert float(ang) == pytest.approx(0.3 * float(omega), rel=1e-4)
    assert float(mid.norm()) == pytest.approx(float(0.7 * a.norm() + 0.3 * b.norm()), rel=1e-5)
    assert torch.allclose(interpolate.slerp(a, 2 * a, 0.5), 1.5 * a, atol=1e-5)  # parallel: lerp


def test_embedding_statistics_detect_separation(monkeypatch):
    rng = np.random.RandomState(0)
    centre = rng.randn(16) * 3
    codes = np.concatenate([centre + rng.randn(40, 16) * 0.3 + 2, centre + rng.randn(40, 16) * 0.3 - 2])
    labels = np.repeat([0, 1], 40)
    res = embed.analyse(codes, labels, ["NC", "AD"], "test codes", "pca", 2)
    assert res.embedding.shape == (80, 2) and res.silhouette_full > 0.8 and res.silhouette_embedding > 0.8
    assert res.cosine[0, 1] < 0.9 < min(res.split_half)
    mixed = embed.analyse(codes, rng.permutation(labels), ["NC", "AD"], "shuffled", "pca", 2)
    assert abs(mixed.silhouette_full) < 0.1 and mixed.cosine[0, 1] > 0.99
    assert embed.reduce_dims(codes, "tsne", 3).shape == (80, 3)
    monkeypatch.setitem(__import__("sys").modules, "umap", None)  # import umap -> ImportError
    with pytest.raises(UserError, match="umap-learn"):
        embed.reduce_dims(codes, "umap", 2)
    with pytest.raises(UserError, match="--dims"):
        embed.reduce_dims(codes, "pca", 4)


def test_plots_written(tmp_path):
    rng = np.random.RandomState(0)
    emb, labels = rng.randn(30, 3), np.repeat([0, 1, 2], 10)
    for dims in (2, 3):
        p = embed.plot_embedding(tmp_path / f"e{dims}.png", emb[:, :dims], labels, ["NC", "MCI", "AD"], "t", "tsne")
        assert Image.open(p).size[0] > 300
    assert embed.plot_cosine(tmp_path / "c.png", embed.cosine_matrix(rng.randn(3, 5)), ["NC", "MCI", "AD"], "c").is_file()


def test_load_target(tmp_path):
    arr = np.tile(np.arange(0, 256, 16, dtype=np.uint8), (16, 1))
    Image.fromarray(arr).save(tmp_path / "s.png")
    t = project.load_target(tmp_path / "s.png", 16)
    assert t.shape == (1, 16, 16) and np.array_equal(io.to_uint8(t)[0], arr)  # exact inverse of to_uint8
    assert project.load_target(tmp_path / "s.png", 8).shape == (1, 8, 8)
    np.save(tmp_path / "s.npy", t.numpy())
    assert torch.allclose(project.load_target(tmp_path / "s.npy", 16), t)
    (tmp_path / "notes.txt").write_text("not an image")
    with pytest.raises(UserError, match="not an image"):
        project.load_target(tmp_path / "notes.txt", 16)
    with pytest.raises(UserError, match="no such file"):
        project.load_target(tmp_path / "missing.png", 16)


def test_load_target_nifti(tmp_path):
    nib = pytest.importorskip("nibabel")
    vol = np.zeros((20, 24, 10), np.float32)
    vol[5:15, 6:18, :] = 100.0
    vol[5:15, 12:18, 5] = 300.0  # upper (anterior, +y) half brighter in the middle axial slice
    nib.save(nib.Nifti1Image(vol, np.eye(4)), str(tmp_path / "v.nii.gz"))
    t = project.load_target(tmp_path / "v.nii.gz", 16)
    assert t.shape == (1, 16, 16) and float(t.max()) == pytest.approx(1.0) and float(t.min()) == -1.0
    assert float(t[0, :8].mean()) > float(t[0, 8:].mean())  # +y displayed at the top
    with pytest.raises(UserError, match="--slice"):
        project.load_target(tmp_path / "v.nii.gz", 16, slice_index=10)


# ------------------------------------------------------------------------------------- with networks


def test_generate_deterministic_and_truncation(nets):
    G, _ = nets
    samples = gen.plan_samples([3, 1], None, ["NC", "AD"], 2)
    a = images(G, samples, psi=0.7, noise="const")
    b = images(G, samples, psi=0.7, noise="const")
    assert a.shape == (4, 1, 16, 16) and torch.equal(a, b)
    r1 = images(G, samples, noise="random")
    assert torch.equal(r1, images(G, samples, noise="random"))  # seeded per image
    one_by_one = images(G, samples, noise="random", batch=1)
    assert torch.equal(one_by_one[1:2], images(G, samples[1:2], noise="random", batch=1))  # whatever else is asked
    assert not torch.equal(r1, images(G, samples, noise="const"))
    flat = images(G, samples, psi=0.0)
    assert torch.allclose(flat[0], flat[1], atol=1e-5) and torch.allclose(flat[0], flat[3], atol=1e-5)


def test_mixing_extremes(nets):
    G, _ = nets
    none = mixing.style_mixing(G, [1, 2], [3], [], class_index=0)
    assert torch.allclose(none.mixed[:, 0], none.row_images, atol=1e-5)
    full = mixing.style_mixing(G, [1, 2], [3, 4], list(range(G.num_ws)), class_index=0)
    assert torch.allclose(full.mixed[1], full.col_images, atol=1e-5)
    part = mixing.style_mixing(G, [1], [3], mixing.parse_styles("coarse", G.num_ws, 16), class_index=0)
    assert not torch.allclose(part.mixed[0, 0], part.row_images[0]) and not torch.allclose(part.mixed[0, 0], part.col_images[0])
    assert mixing.mixing_grid(full).shape == (3 * 18 + 2, 3 * 18 + 2, 1)


def test_interpolation_endpoints(nets):
    G, _ = nets
    ends = images(G, gen.plan_samples([5, 6, 7], 1, ["NC", "AD"], 2))
    for space in ("w", "z"):
        frames = interpolate.interpolate_seeds(G, [5, 6, 7], space, frames=4, class_index=1)
        assert frames.shape == (7, 1, 16, 16)
        assert torch.allclose(frames[[0, 3, 6]], ends, atol=1e-4)
    walk = interpolate.class_walk(G, [0, 1], frames=5, seeds=[5], num_samples=64)
    assert walk.shape == (2, 5, 1, 16, 16)
    assert torch.allclose(walk[1, -1], ends[0], atol=1e-4)  # seed 5 as AD at the end of its walk
    with pytest.raises(UserError, match="two seeds"):
        interpolate.interpolate_seeds(G, [5], "w", 4, class_index=0)


def test_gif_and_strip(tmp_path, nets):
    G, _ = nets
    walk = interpolate.class_walk(G, [0, 1], frames=4, num_samples=32)
    gif = interpolate.write_gif(tmp_path / "w.gif", walk, zoom=2)
    with Image.open(gif) as im:
        assert im.is_animated and im.n_frames == 6 and im.size == (32, 32)  # 4 forward + 2 back
    strip = np.asarray(Image.open(interpolate.write_strip(tmp_path / "w.png", walk)))
    assert strip.shape == (16 + 4, 4 * 18 + 2)


def test_edit_sequence(nets):
    G, _ = nets
    ws = smp.map_latents(G, smp.seed_latents([9], G.z_dim), smp.one_hot([0], 2))[0].cpu()
    direction = edit.class_direction(G, 1, 0, num_samples=128)
    imgs, edited = edit.edit_sequence(G, ws, direction, [-1.0, 0.0, 2.0])
    assert imgs.shape == (3, 1, 16, 16) and torch.allclose(edited[1], ws)
    assert torch.allclose(edited[2] - edited[1], 2 * direction.expand_as(ws), atol=1e-5)
    assert torch.allclose(imgs[1], smp.synthesize(G, ws[None])[0], atol=1e-5)


def test_latent_file_validation(tmp_path, nets):
    G, _ = nets
    np.save(tmp_path / "w.npy", np.zeros(G.w_dim, np.float32))
    assert edit.load_latent(tmp_path / "w.npy", G.num_ws, G.w_dim).shape == (G.num_ws, G.w_dim)
    np.save(tmp_path / "bad.npy", np.zeros((3, 7), np.float32))
    with pytest.raises(UserError, match="expects"):
        edit.load_latent(tmp_path / "bad.npy", G.num_ws, G.w_dim)
    (tmp_path / "x.npy").write_text("junk")
    with pytest.raises(UserError, match="not a .npy"):
        edit.load_latent(tmp_path / "x.npy", G.num_ws, G.w_dim)


def test_discriminator_features(nets):
    G, D = nets
    imgs = images(G, gen.plan_samples([0, 1, 2], None, ["NC", "AD"], 2))
    feats = embed.discriminator_features(D, imgs, torch.tensor([0, 0, 0, 1, 1, 1]), batch_size=4)
    assert feats.shape[0] == 6 and feats.ndim == 2 and np.isfinite(feats).all()


def test_projection_reduces_loss_and_leaves_model_alone(nets):
    G, _ = nets
    before = {k: v.clone() for k, v in G.state_dict().items()}
    target = torch.zeros(1, 16, 16)
    target[:, 4:12, 4:12] = 0.8
    target -= 0.5
    res = project.project(G, target, steps=40, w_avg_samples=256, seed=0)
    assert res.final_loss < res.initial_loss and res.ws.shape == (G.num_ws, G.w_dim)
    assert np.allclose(res.ws, res.ws[0:1])  # W: one w for every layer
    assert len(res.history) == 40 and set(res.noise) == {q for q, _, _ in project.find_noise_buffers(G)}
    assert all(torch.equal(v, G.state_dict()[k]) for k, v in before.items())
    plus = project.project(G, target, steps=10, w_plus=True, w_avg_samples=64, optimize_noise=False)
    assert plus.w_plus and plus.noise == {}


def test_nearest_training_images_finds_copies():
    class Pool:  # the `ds.batch` contract of stylemri.data, on a fixed tensor
        def __init__(self, x):
            self.x = x

        def __len__(self):
            return len(self.x)

        def batch(self, idx, resolution=None, xflip=None):
            assert resolution == 8
            return self.x[idx], torch.zeros(len(idx), dtype=torch.long)

    g = torch.Generator().manual_seed(0)
    pool = torch.randint(0, 251, (300, 1, 8, 8), generator=g).float() / 127.5 - 1  # exact uint8 levels
    queries = torch.stack([pool[123], pool[7].flip(-1), pool[250] + 4 / 127.5])
    res = compare.nearest_training_images(queries, Pool(pool), num_baseline=100)
    assert res.nearest_index.tolist() == [123, 7, 250]
    assert res.flipped.tolist() == [False, True, False]
    assert res.distance[0] == 0.0 and res.distance[2] == pytest.approx(4 / 255, rel=1e-6)
    assert res.closer.tolist() == [True, True, True] and res.threshold > 0.2  # random images lie far apart
