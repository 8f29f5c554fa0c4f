"""`stylemri export RUN --format onnx|torchscript|safetensors`: the generator for tools without stylemri.

onnx / torchscript: one graph `img = G(z[, c], trunc)`: z (N, z_dim) float32, c (N, c_dim) one-hot float32
(conditional models only), trunc a float32 scalar (1 = no truncation; w = w_avg + trunc (w - w_avg)),
noise fixed to the stored maps (`noise="const"`), img (N, C, R, R) float32 in [-1, 1] (not clipped, unless the
model was trained with `--clamp-output`, whose clamp is part of the graph); the batch size is free. Before
anything is written the exported bytes are run on 8 seeds and compared with `TrainedModel.generate` (max abs
difference must stay within 1e-4; ONNX is checked when onnxruntime is installed). safetensors: G_ema's tensors under NVlabs' parameter names (ours are the same), the fixed FIR
taps included, so NVlabs' `Generator(**init_kwargs).load_state_dict(...)` takes them strictly; the
init kwargs travel in the file's metadata, with `clamp_output` ("true": clamp NVlabs' output to [-1, 1] to get
this model's images, since NVlabs' generator has no such clamp).
"""

from __future__ import annotations

import importlib.util
import io
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import safetensors.torch
import torch
from torch import nn

from stylemri.errors import UserError
from stylemri.io import atomic_write, write_json
from stylemri.model import TrainedModel
from stylemri.networks.sampling import one_hot, seed_latents

FORMATS = ("onnx", "torchscript", "safetensors")
FILE_NAMES = {"onnx": "generator.onnx", "torchscript": "generator.torchscript.pt", "safetensors": "G_ema.safetensors"}
EXTRA_MODULES = {"onnx": ("onnx",)}  # formats that need the `export` extra
CHECK_SEEDS = tuple(range(8))
TOLERANCE = 1e-4


class ExportedGenerator(nn.Module):
    """(z, c, trunc) -> img with constant noise: the whole seed -> image path as one traceable module."""

    def __init__(self, G: nn.Module) -> None:
        super().__init__()
        self.G = G

    def forward(self, z: torch.Tensor, c: torch.Tensor, trunc: torch.Tensor) -> torch.Tensor:
        ws = self.G.mapping(z, c)
        w_avg = self.G.mapping.w_avg.to(ws.dtype)
        ws = w_avg + trunc * (ws - w_avg)
        return self.G.synthesis(ws, noise_mode="const")


class ExportedUnconditional(ExportedGenerator):
    """The unconditional model's graph: (z, trunc) -> img."""

    def forward(self, z: torch.Tensor, trunc: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return super().forward(z, torch.zeros(z.shape[0], 0, device=z.device), trunc)


@dataclass
class ExportResult:
    path: Path
    format: str
    max_abs_diff: float | None  # against TrainedModel.generate on CHECK_SEEDS; None: not checked (no onnxruntime)
    inputs: list[str]


def missing_extra(fmt: str) -> str | None:
    """The module a format needs that is not installed, or None."""
    for module in EXTRA_MODULES.get(fmt, ()):
        if importlib.util.find_spec(module) is None:
            return module
    return None


def _check_exportable(model: TrainedModel, fmt: str) -> None:
    cfg = model.config.network
    if fmt not in FORMATS:
        raise UserError(f"--format {fmt}: expected one of {', '.join(FORMATS)}")
    if (cfg.arch != "stylegan2" or cfg.dims != 2 or model.stage is not None) and fmt != "torchscript":
        raise UserError(f"{model.run_dir}: --format {fmt} exports 2-D StyleGAN2 generators grown to full size "
                        f"(this run: {cfg.arch}, {cfg.dims}-D); use --format torchscript")
    require_extra(fmt)


def require_extra(fmt: str) -> None:
    """One line when `fmt` needs a package of the `export` extra that is not installed."""
    need = missing_extra(fmt)
    if need:
        raise UserError(f"--format {fmt}: needs the '{need}' package, which is not installed; install the "
                        f"export extra: pip install 'stylemri[export]'")


def _example(model: TrainedModel, seeds: tuple[int, ...], trunc: float) -> tuple[torch.Tensor, ...]:
    G = model.G
    z = seed_latents(list(seeds), G.z_dim)
    t = torch.tensor(float(trunc), dtype=torch.float32)
    if not model.conditional:
        return z, t
    c = one_hot(model.classes_for(list(seeds), None), G.c_dim)
    return z, c, t


def _wrapper(model: TrainedModel) -> nn.Module:
    G = model.G.to("cpu")
    return (ExportedGenerator(G) if model.conditional else ExportedUnconditional(G)).eval()


def _input_names(model: TrainedModel) -> list[str]:
    return ["z", "c", "trunc"] if model.conditional else ["z", "trunc"]


def _torchscript(model: TrainedModel) -> bytes:
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer notes on python-side shape arithmetic
        traced = torch.jit.trace(_wrapper(model), _example(model, (0, 1), 1.0), check_trace=False)
    buf = io.BytesIO()
    torch.jit.save(traced, buf)
    return buf.getvalue()


def _run_torchscript(data: bytes) -> Callable[..., np.ndarray]:
    module = torch.jit.load(io.BytesIO(data))
    return lambda *args: module(*args).detach().numpy()


def _onnx(model: TrainedModel) -> bytes:
    names = _input_names(model)
    dynamic = {n: {0: "batch"} for n in names if n != "trunc"} | {"img": {0: "batch"}}
    buf = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript-based exporter's deprecation note
        torch.onnx.export(_wrapper(model), _example(model, (0, 1), 1.0), buf, input_names=names,
                          output_names=["img"], dynamic_axes=dynamic, opset_version=17, dynamo=False)
    data = buf.getvalue()
    import onnx

    onnx.checker.check_model(onnx.load_from_string(data))
    return data


def _run_onnx(data: bytes, names: list[str]) -> Callable[..., np.ndarray] | None:
    if importlib.util.find_spec("onnxruntime") is None:
        return None
    import onnxruntime

    session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
    return lambda *args: session.run(["img"], {n: a.numpy() for n, a in zip(names, args)})[0]


def compare(model: TrainedModel, run: Callable[..., np.ndarray], trunc: float = 0.7) -> float:
    """Max abs difference between an exported graph and `model.generate` on CHECK_SEEDS."""
    expected = model.generate(list(CHECK_SEEDS), trunc=trunc, noise="const").numpy()
    got = run(*_example(model, CHECK_SEEDS, trunc))
    if got.shape != expected.shape:
        raise UserError(f"exported generator gives shape {got.shape}, expected {expected.shape}")
    return float(np.abs(got - expected).max())


def nvlabs_init_kwargs(model: TrainedModel) -> dict[str, Any]:
    """The NVlabs `training.networks.Generator` arguments that build the network these tensors fit."""
    n = model.config.network
    return {"z_dim": n.z_dim, "c_dim": n.c_dim, "w_dim": n.w_dim, "img_resolution": n.resolution,
            "img_channels": n.img_channels, "mapping_kwargs": {"num_layers": n.map_layers, "lr_multiplier": n.map_lr_mul},
            "synthesis_kwargs": {"channel_base": n.channel_base, "channel_max": n.channel_max,
                                 "conv_clamp": n.conv_clamp, "num_fp16_res": 0}}


def nvlabs_tensors(G: nn.Module) -> dict[str, torch.Tensor]:
    """G's parameters and every buffer (the FIR taps too) under their names, which are NVlabs' names."""
    out = {k: v.detach().cpu().contiguous() for k, v in G.named_parameters()}
    out.update({k: v.detach().cpu().contiguous() for k, v in G.named_buffers()})
    return dict(sorted(out.items()))


def _safetensors(model: TrainedModel) -> bytes:
    meta = {"format": "nvlabs-stylegan2-ada-pytorch G_ema state_dict",
            "nvlabs_init_kwargs": json.dumps(nvlabs_init_kwargs(model)),
            "class_names": json.dumps(list(model.class_names)), "source_checkpoint": str(model.checkpoint),
            "clamp_output": json.dumps(model.config.network.clamp_output)}  # NVlabs' G has no clamp: apply it
    return safetensors.torch.save(nvlabs_tensors(model.G), metadata=meta)


def export(model: TrainedModel, fmt: str, outdir: Path) -> ExportResult:
    """Build, check (see the module docstring) and only then write `outdir/<file>` plus a JSON sidecar."""
    _check_exportable(model, fmt)
    names = _input_names(model)
    diff: float | None = None
    if fmt == "safetensors":
        data = _safetensors(model)
    elif fmt == "torchscript":
        data = _torchscript(model)
        diff = compare(model, _run_torchscript(data))
    else:
        data = _onnx(model)
        runner = _run_onnx(data, names)
        diff = compare(model, runner) if runner is not None else None
    if diff is not None and not diff <= TOLERANCE:
        raise UserError(f"{model.checkpoint}: the exported {fmt} generator differs from the model by "
                        f"{diff:.2e} (> {TOLERANCE:g}); nothing written")
    path = outdir / FILE_NAMES[fmt]
    outdir.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as f:
        f.write(data)
    write_json(path.with_name(path.name + ".json"), {
        "format": fmt, "file": path.name, "checkpoint": str(model.checkpoint), "kimg": model.kimg,
        "inputs": names if fmt != "safetensors" else None, "output": "img" if fmt != "safetensors" else None,
        "noise": "const", "resolution": model.resolution, "channels": int(model.G.img_channels),
        "class_names": list(model.class_names), "max_abs_diff_vs_generate": diff, "check_seeds": list(CHECK_SEEDS),
        "clamp_output": model.config.network.clamp_output,
        "nvlabs_init_kwargs": nvlabs_init_kwargs(model) if fmt == "safetensors" else None})
    return ExportResult(path, fmt, diff, names)
