"""`stylemri export`: TorchScript and ONNX graphs equal `TrainedModel.generate` within 1e-4 on 8 seeds
(read back here independently of the exporter's own check); safetensors carry NVlabs' names."""

from __future__ import annotations

import importlib.util
import io
import json
from pathlib import Path

import numpy as np
import pytest
import safetensors.torch
import torch

import stylemri
from stylemri.config import NetworkConfig
from stylemri.interop import export as exp
from stylemri.interop import nvlabs
from stylemri.interop.importer import import_pickle
from stylemri.interop.safe_pickle import safe_load
from stylemri.networks.sampling import one_hot, seed_latents
from tests.conftest import one_line_error, run_cli
from tests.nvlabs_pickle import nvlabs_snapshot

SEEDS = list(range(8))
CFG = dict(resolution=16, img_channels=3, channel_base=256, channel_max=32, z_dim=16, w_dim=16, mbstd_group=2)


@pytest.fixture(scope="module", params=[0, 2], ids=["uncond", "cond"])
def run(request, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("export")
    data, _, _ = nvlabs_snapshot(NetworkConfig(**CFG, c_dim=request.param), seed=request.param)
    (folder / "m.pkl").write_bytes(data)
    return import_pickle(folder / "m.pkl", folder / "runs").run_dir


def _inputs(model, trunc: float) -> tuple[torch.Tensor, ...]:
    z = seed_latents(SEEDS, model.G.z_dim)
    t = torch.tensor(trunc)
    if model.conditional:
        return z, one_hot([s % model.G.c_dim for s in SEEDS], model.G.c_dim), t
    return z, t


def test_torchscript_equals_generate(run, tmp_path, capsys, one_thread):
    rc, out, err = run_cli(capsys, "export", run, "--format", "torchscript", "--outdir", tmp_path)
    assert rc == 0, err
    model = stylemri.load(run, device="cpu")
    path = tmp_path / model.tag / "generator.torchscript.pt"
    assert "max abs diff vs generate on 8 seeds" in out and str(path) in out
    graph = torch.jit.load(str(path))
    for trunc in (1.0, 0.5):
        want = model.generate(SEEDS, trunc=trunc, noise="const")
        assert (graph(*_inputs(model, trunc)) - want).abs().max() <= 1e-4
    sidecar = json.loads(path.with_name(path.name + ".json").read_text())
    assert sidecar["inputs"] == (["z", "c", "trunc"] if model.conditional else ["z", "trunc"])


@pytest.mark.skipif(importlib.util.find_spec("onnxruntime") is None or importlib.util.find_spec("onnx") is None,
                    reason="onnx / onnxruntime not installed (pip install 'stylemri[export]')")
def test_onnx_equals_generate(run, tmp_path, capsys, one_thread):
    import onnxruntime

    rc, out, err = run_cli(capsys, "export", run, "--format", "onnx", "--outdir", tmp_path)
    assert rc == 0, err
    model = stylemri.load(run, device="cpu")
    session = onnxruntime.InferenceSession(str(tmp_path / model.tag / "generator.onnx"),
                                           providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    assert names == (["z", "c", "trunc"] if model.conditional else ["z", "trunc"])
    for trunc in (1.0, 0.7):
        got = session.run(["img"], {n: a.numpy() for n, a in zip(names, _inputs(model, trunc))})[0]
        want = model.generate(SEEDS, trunc=trunc, noise="const").numpy()
        assert np.abs(got - want).max() <= 1e-4


def test_safetensors_carry_nvlabs_names_and_init_kwargs(run, tmp_path, capsys):
    rc, out, err = run_cli(capsys, "export", run, "--format", "safetensors", "--outdir", tmp_path)
    assert rc == 0, err
    model = stylemri.load(run, device="cpu")
    path = tmp_path / model.tag / "G_ema.safetensors"
    tensors = safetensors.torch.load_file(str(path))
    # the names an NVlabs G_ema of this shape holds (its record, FIR taps included), one for one
    data, _, _ = nvlabs_snapshot(NetworkConfig(**dict(CFG, img_channels=1), c_dim=model.G.c_dim))
    record = safe_load(data, "x")["G_ema"]
    names = set(nvlabs.tensors_of(record)) | {k for k, _ in model.G.named_buffers() if "resample_filter" in k}
    assert set(tensors) == names
    with safetensors.safe_open(str(path), framework="pt") as f:
        kwargs = json.loads(f.metadata()["nvlabs_init_kwargs"])
        assert json.loads(f.metadata()["clamp_output"]) is False  # NVlabs' G has no clamp: the file says so
    assert json.loads(path.with_name(path.name + ".json").read_text())["clamp_output"] is False
    assert kwargs["img_resolution"] == 16 and kwargs["synthesis_kwargs"]["channel_base"] == 256
    assert torch.equal(tensors["mapping.w_avg"], model.G.mapping.w_avg)


def test_onnx_without_the_extra_is_one_line_and_writes_nothing(run, tmp_path, capsys, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(exp.importlib.util, "find_spec", lambda name, *a: None if name == "onnx" else real(name, *a))
    one_line_error(capsys, "export", run, "--format", "onnx", "--outdir", tmp_path / "x",
                   match="needs the 'onnx' package")
    assert not (tmp_path / "x").exists()


def test_unknown_format_is_one_line(run, capsys):
    one_line_error(capsys, "export", run, "--format", "pickle", match="--format")
