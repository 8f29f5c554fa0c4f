"""benchmarks/bench_vs_nvlabs.py without NVlabs' code: the in-memory dataset with NVlabs' Dataset interface,
the kimg plan, the recipe against the Makefile's DEMO_TRAIN, and the one-line errors for a bad --nvlabs.
The last test also trains NVlabs' side for a few steps when a checkout is named by STYLEMRI_NVLABS."""

from __future__ import annotations

import os
import shlex
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks import bench_vs_nvlabs as bvn
from benchmarks.nvlabs_side import MemoryDataset, apply_shims, NvlabsTrainer, Recipe, check_checkout, import_nvlabs
from stylemri.config import DataConfig
from stylemri.data import load_dataset
from stylemri.errors import UserError
from tests.conftest import write_png8

ROOT = Path(__file__).resolve().parents[1]
CADENCE = {"--kimg", "--tick-kimg", "--sample-ticks", "--checkpoint-ticks", "--keep-checkpoints", "--device", "--threads"}


def _flag_values(tokens: list[str]) -> dict[str, str | None]:
    """`--flag value` / `--switch` tokens -> {flag: value or None}."""
    out: dict[str, str | None] = {}
    for i, tok in enumerate(tokens):
        if tok.startswith("--"):
            nxt = tokens[i + 1] if i + 1 < len(tokens) else None
            out[tok] = None if nxt is None or nxt.startswith("--") else nxt
    return out


def _demo_train() -> list[str]:
    text = (ROOT / "Makefile").read_text().replace("\\\n", " ")
    line = next(ln for ln in text.splitlines() if ln.startswith("DEMO_TRAIN"))
    return shlex.split(line.split("?=", 1)[1])


def test_memory_dataset_has_nvlabs_interface() -> None:
    images = np.arange(5 * 1 * 4 * 4, dtype=np.uint8).reshape(5, 1, 4, 4)
    ds = MemoryDataset(images, np.array([0, 2, 1, 2, 0]))
    assert (len(ds), ds.image_shape, ds.num_channels, ds.resolution) == (5, [1, 4, 4], 1, 4)
    assert (ds.label_shape, ds.label_dim, ds.has_labels, ds.has_onehot_labels) == ([3], 3, True, True)
    img, label = ds[1]
    assert img.dtype == np.uint8 and np.array_equal(img, images[1]) and img is not images[1]
    assert label.dtype == np.float32 and label.tolist() == [0, 0, 1]
    assert ds.get_details(3).raw_label == 2 and ds.get_details(3).xflip is False
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=5)))  # NVlabs' loop collates it so
    assert batch[0].dtype == torch.uint8 and batch[1].shape == (5, 3)
    unlabeled = MemoryDataset(images, None)
    assert unlabeled.label_dim == 0 and unlabeled[0][1].shape == (0,) and not unlabeled.has_labels


@pytest.mark.parametrize("images, labels", [
    (np.zeros((2, 1, 4, 4), np.float32), None),  # not uint8
    (np.zeros((2, 1, 4, 8), np.uint8), None),  # not square
    (np.zeros((2, 1, 4, 4), np.uint8), np.array([0, -1])),  # negative label
    (np.zeros((2, 1, 4, 4), np.uint8), np.array([0, 1, 1])),  # one label too many
])
def test_memory_dataset_refuses_wrong_arrays(images: np.ndarray, labels: np.ndarray | None) -> None:
    with pytest.raises(ValueError):
        MemoryDataset(images, labels)


def test_memory_dataset_serves_stylemri_pixels(tmp_path: Path) -> None:
    for cls, n in (("AD", 3), ("NC", 2)):
        for i in range(n):
            write_png8(tmp_path / "src" / cls / f"{cls}{i}.png", 16, 16, seed=i + 10 * len(cls))
    ds = load_dataset(DataConfig(source=str(tmp_path / "src"), resolution=8, xflip=False))
    mem = MemoryDataset.from_stylemri(ds)
    pixels, labels = ds.batch_uint8(np.arange(len(ds)))
    assert len(mem) == len(ds) == 5 and mem.label_dim == 2 and mem.resolution == 8
    for i in range(len(ds)):
        img, onehot = mem[i]
        assert np.array_equal(img, pixels[i].numpy()) and int(onehot.argmax()) == int(labels[i])
        # the [-1, 1] image stylemri trains on is what NVlabs' loop makes of the uint8 pixels
        assert torch.allclose(torch.from_numpy(img).float() / 127.5 - 1, ds[i][0], atol=1e-6)


def test_plan_points_on_whole_batches() -> None:
    plan = bvn.make_plan(40, 4, 16)
    assert plan.point_nimg == [10000, 20000, 30000, 40000] and plan.tick_nimg == 2000
    small = bvn.make_plan(0.2, 2, 16)  # 100 images per point -> 6 batches, one tick per point
    assert small.point_nimg == [96, 192] and small.tick_nimg == 96
    for kimg, points in ((0, 4), (-1, 4), (1, 0)):
        with pytest.raises(UserError):
            bvn.make_plan(kimg, points, 16)


def test_stylemri_flags_are_demo_train_and_parse() -> None:
    plan = bvn.make_plan(40, 4, 16)
    ours = bvn.stylemri_flags(Recipe(), plan)
    demo = {k: v for k, v in _flag_values(_demo_train()).items() if k not in CADENCE}
    mine = _flag_values(ours)
    assert {k: mine.get(k) for k in demo} == demo  # every training value of the demo recipe, as given
    assert mine["--kimg"] == "40" and mine["--tick-kimg"] == "2" and mine["--checkpoint-ticks"] == "5"
    from stylemri.cli import build_parser

    args = build_parser().parse_args(["train", *ours, "--device", "cpu", "--threads", "1"])  # every flag exists
    assert args.train_r1_gamma == Recipe.r1_gamma and args.net_mbstd_group == Recipe.mbstd_group


def test_bad_nvlabs_path_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(UserError, match="not a folder"):
        check_checkout(tmp_path / "nope")
    (tmp_path / "fake" / "training").mkdir(parents=True)
    (tmp_path / "fake" / "training" / "networks.py").write_text("")
    with pytest.raises(UserError, match="training/loss.py is missing"):
        import_nvlabs(tmp_path / "fake")
    assert bvn.main(["--nvlabs", str(tmp_path / "fake"), "--kimg", "0.1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("bench_vs_nvlabs: error: --nvlabs") and "Traceback" not in err[0]
    assert bvn.main(["--nvlabs", str(tmp_path), "--kimg", "-3"]) == 2
    assert "--kimg -3" in capsys.readouterr().err


NVLABS = os.environ.get("STYLEMRI_NVLABS")


@pytest.mark.skipif(not NVLABS, reason="set STYLEMRI_NVLABS to a NVlabs/stylegan2-ada-pytorch checkout")
def test_nvlabs_side_trains_a_few_steps() -> None:
    nv = import_nvlabs(Path(NVLABS))  # type: ignore[arg-type]
    apply_shims(nv, torch.device("cpu"))
    rng = np.random.default_rng(0)
    data = MemoryDataset(rng.integers(0, 256, (12, 1, 8, 8), dtype=np.uint8), np.arange(12) % 3)
    recipe = Recipe(resolution=8, batch=4, channel_base=64, channel_max=16, z_dim=8, w_dim=8, r1_interval=2,
                    ada_target=-2.0, ada_interval=1, ada_kimg=0.1)
    trainer = NvlabsTrainer(nv, data, recipe, torch.device("cpu"))
    before = [p.clone() for p in trainer.G_ema.parameters()]
    ticks = []
    trainer.train(8, 16, ticks.append)
    assert [t.nimg for t in ticks] == [8, 16] and trainer.batch_idx == 4
    assert trainer.ada_p == pytest.approx(4 * 4 / 100)  # r_t > target: p rose every step
    assert any(not torch.equal(a, b) for a, b in zip(before, trainer.G_ema.parameters()))
    z, c = torch.randn(3, 8), torch.eye(3)
    img = trainer.generate(trainer.G_ema, z, c, batch=2)
    assert img.shape == (3, 1, 8, 8) and torch.isfinite(img).all()
