"""`stylemri import`: NVlabs-structured pickles (built by tests/nvlabs_pickle.py from our own networks) are
read without running code from them, mapped name for name, converted to one luma channel, and written as
an ordinary run; anything else is one line, exit 2, nothing written."""

from __future__ import annotations

import json
import os
import pickle
from collections import OrderedDict
from pathlib import Path

import pytest
import torch

import stylemri
from stylemri.config import NetworkConfig
from stylemri.errors import UserError
from stylemri.interop import nvlabs
from stylemri.interop.importer import import_pickle, read_pickle
from stylemri.interop.safe_pickle import safe_load
from stylemri.networks.sampling import generate_images
from tests.conftest import one_line_error, run_cli
from tests.nvlabs_pickle import Persistent, dumps_with_fakes, nvlabs_snapshot

RGB = NetworkConfig(resolution=16, img_channels=3, channel_base=256, channel_max=32, z_dim=16, w_dim=16,
                    mbstd_group=2)
LUMA = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, torch.nn.Module, torch.nn.Module]:
    data, G, D = nvlabs_snapshot(RGB)
    path = tmp_path_factory.mktemp("nvlabs") / "network-snapshot-000400.pkl"
    path.write_bytes(data)
    return path, G, D


def _runs(folder: Path) -> list[Path]:
    return sorted(folder.iterdir()) if folder.exists() else []


def test_import_writes_a_run_whose_image_is_the_luma_of_the_rgb_image(snapshot, tmp_path, capsys, one_thread):
    path, G, D = snapshot
    rc, out, err = run_cli(capsys, "import", path, "--outdir", tmp_path / "runs")
    assert rc == 0, err
    assert "no code from the file ran" in out and "G, G_ema and D" in out
    (run,) = _runs(tmp_path / "runs")
    model = stylemri.load(run, device="cpu")
    assert model.kimg == 400 and model.G.img_channels == 1 and model.resolution == 16
    seeds = list(range(8))
    rgb = generate_images(G, seeds, noise="const", batch=8)
    assert rgb.shape[1] == 3
    grey = model.generate(seeds, noise="const", trunc=1.0, batch=8)
    assert (grey - (rgb * LUMA).sum(1, keepdim=True)).abs().max() < 1e-5
    # D: a grey slice g is the RGB image (g, g, g)
    img = grey[:4].clamp(-1, 1)
    assert (model.discriminator()(img, None) - D(img.repeat(1, 3, 1, 1), None)).abs().max() < 1e-4
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["network"]["channel_base"] == 256 and cfg["network"]["img_channels"] == 1
    record = json.loads(next((run / "checkpoints").glob("ckpt-*.json")).read_text())
    assert record["imported"]["format"] == "nvlabs-pickle" and len(record["imported"]["sha256"]) == 64
    rc, out, err = run_cli(capsys, "generate", run, "--seeds", "0-1", "--outdir", tmp_path / "gen")
    assert rc == 0, err
    assert (tmp_path / "gen" / "kimg-400" / "grid.png").is_file()


def test_conditional_pickle_imports_with_numbered_classes(tmp_path, one_thread):
    cfg = NetworkConfig(resolution=8, img_channels=3, c_dim=2, channel_base=128, channel_max=16, z_dim=8,
                        w_dim=8, map_layers=3, mbstd_group=2, d_map_layers=2, conv_clamp=256.0)
    data, G, _ = nvlabs_snapshot(cfg, seed=3)
    (tmp_path / "c.pkl").write_bytes(data)
    result = import_pickle(tmp_path / "c.pkl", tmp_path / "runs")
    net = result.config.network
    assert (net.c_dim, net.map_layers, net.d_map_layers, net.conv_clamp) == (2, 3, 2, 256.0)
    model = stylemri.load(result.run_dir, device="cpu")
    assert model.class_names == ("class0", "class1")
    rgb = generate_images(G, [0, 1, 2, 3], [1, 1, 0, 0], noise="const")
    grey = model.generate([0, 1, 2, 3], class_name=["class1", "class1", "class0", "class0"])
    assert (grey - (rgb * LUMA).sum(1, keepdim=True)).abs().max() < 1e-5


def test_parameter_map_is_name_for_name():
    """Every NVlabs tensor name is ours; only the FIR constants are not saved by us."""
    data, G, D = nvlabs_snapshot(RGB)
    obj = safe_load(data, "mem.pkl")
    theirs = nvlabs.tensors_of(obj["G_ema"])
    assert set(theirs) == set(G.state_dict())
    assert set(nvlabs.tensors_of(obj["D"])) == set(D.state_dict())
    assert all(torch.equal(theirs[k], v) for k, v in G.state_dict().items())


class RunsACommand:
    """Unpickled by plain pickle, this would run `touch MARKER`."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_that_would_run_a_command_is_refused_and_nothing_runs(tmp_path, capsys):
    marker = tmp_path / "RAN"
    evil = pickle.dumps({"G_ema": RunsACommand(marker)})
    (tmp_path / "evil.pkl").write_bytes(evil)
    line = one_line_error(capsys, "import", tmp_path / "evil.pkl", "--outdir", tmp_path / "runs",
                          match=f"refused global {os.system.__module__}.system")
    assert "nothing was imported or run" in line
    # hidden deep inside a network's state, after many good tensors: refused just the same
    data, _, _ = nvlabs_snapshot(RGB, extra={"augment_pipe": Persistent("AugmentPipe", {"p": RunsACommand(marker)})})
    (tmp_path / "nested.pkl").write_bytes(data)
    one_line_error(capsys, "import", tmp_path / "nested.pkl", "--outdir", tmp_path / "runs", match="refused global")
    assert not marker.exists() and not (tmp_path / "runs").exists()
    with pytest.raises(UserError, match="refused global builtins.eval"):
        safe_load(pickle.dumps(eval), "x.pkl")
    # plain pickle really would have run it: the test's object is live
    pickle.loads(evil)
    assert marker.exists()


@pytest.mark.parametrize("case, match", [
    ("truncated", "pickle is truncated"),
    ("not_pickle", "not a binary pickle"),
    ("empty", "the file is empty"),
    ("no_g_ema", "no G_ema network"),
    ("other_network", "expected an NVlabs StyleGAN2 Generator"),
    ("stylegan3", "StyleGAN3 ('T'/'R') generator"),
    ("folder", "is a folder"),
])
def test_bad_pickles_are_one_line_and_write_nothing(case, match, tmp_path, capsys, snapshot):
    path = tmp_path / "in.pkl"
    good = snapshot[0].read_bytes()
    if case == "truncated":
        path.write_bytes(good[: len(good) // 2])
    elif case == "not_pickle":
        path.write_bytes(b"\x89PNG\r\n\x1a\n not a pickle")
    elif case == "empty":
        path.write_bytes(b"")
    elif case == "no_g_ema":
        path.write_bytes(dumps_with_fakes({"G": None, "D": None}))
    elif case == "other_network":
        path.write_bytes(nvlabs_snapshot(RGB, g_class="Discriminator")[0])
    elif case == "stylegan3":
        sg3 = Persistent("SynthesisInput", {"_parameters": OrderedDict(), "_buffers": OrderedDict(),
                                            "_modules": OrderedDict()})
        path.write_bytes(_sg3_pickle(sg3))
    elif case == "folder":
        path.mkdir()
    one_line_error(capsys, "import", path, "--outdir", tmp_path / "runs", match=match)
    assert not _runs(tmp_path / "runs")


def _sg3_pickle(sg3_input: Persistent) -> bytes:
    """A generator whose synthesis starts with StyleGAN3's `input` layer and L0_... layers."""
    empty = {"_parameters": OrderedDict(), "_buffers": OrderedDict(), "_modules": OrderedDict()}
    synthesis = Persistent("SynthesisNetwork", dict(empty, _modules=OrderedDict(
        input=sg3_input, L0_36_512=Persistent("SynthesisLayer", dict(empty)))))
    G = Persistent("Generator", dict(empty, img_resolution=16, _modules=OrderedDict(synthesis=synthesis)))
    return dumps_with_fakes({"G_ema": G})


def test_a_discriminator_of_another_architecture_is_left_out_with_a_warning(tmp_path, capsys):
    data, _, _ = nvlabs_snapshot(RGB, d_architecture="orig")
    (tmp_path / "cifar.pkl").write_bytes(data)
    rc, out, err = run_cli(capsys, "import", tmp_path / "cifar.pkl", "--outdir", tmp_path / "runs")
    assert rc == 0, err
    assert "stylemri: warning:" in err and "'orig'" in err and "D left out" in out
    (run,) = _runs(tmp_path / "runs")
    with pytest.raises(UserError, match="no discriminator weights"):
        stylemri.load(run, device="cpu").discriminator()


def test_read_pickle_keeps_module_source_as_text(snapshot):
    obj, sha = read_pickle(snapshot[0])
    assert obj["G_ema"].module_src.startswith("# NVlabs module source") and len(sha) == 64
    assert obj["training_set_kwargs"]["path"] == "datasets/tiny.zip"
