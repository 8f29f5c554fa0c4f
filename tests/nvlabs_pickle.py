"""Build pickles laid out as NVlabs' `torch_utils/persistence.py` writes them, from stylemri's own
networks (whose module names are NVlabs'), without any NVlabs code: every network becomes a call of the
global `torch_utils.persistence._reconstruct_persistent_obj(meta)` with meta = {type: 'class', version,
module_src, class_name, state: the module's __dict__ (_parameters, _buffers, _modules, ...)}; kwargs are
`dnnlib.util.EasyDict`s; tensors pickle as torch pickles them. Those two globals are stand-ins registered
in sys.modules only while dumping."""

from __future__ import annotations

import contextlib
import pickle
import sys
import types
from collections import OrderedDict
from typing import Any, Iterator

import torch

from stylemri.config import NetworkConfig
from stylemri.networks import build_discriminator, build_generator


def _reconstruct_persistent_obj(meta: Any) -> Any:  # the stand-in: never called by the tests' loader
    raise AssertionError("a test pickle's persistent object was reconstructed by real unpickling")


class EasyDict(dict):
    pass


@contextlib.contextmanager
def _fake_nvlabs_modules() -> Iterator[None]:
    persistence = types.ModuleType("torch_utils.persistence")
    util = types.ModuleType("dnnlib.util")
    _reconstruct_persistent_obj.__module__ = "torch_utils.persistence"
    _reconstruct_persistent_obj.__qualname__ = "_reconstruct_persistent_obj"
    EasyDict.__module__, EasyDict.__qualname__ = "dnnlib.util", "EasyDict"
    persistence._reconstruct_persistent_obj = _reconstruct_persistent_obj  # type: ignore[attr-defined]
    util.EasyDict = EasyDict  # type: ignore[attr-defined]
    names = {"torch_utils": types.ModuleType("torch_utils"), "torch_utils.persistence": persistence,
             "dnnlib": types.ModuleType("dnnlib"), "dnnlib.util": util}
    saved = {n: sys.modules.get(n) for n in names}
    sys.modules.update(names)
    try:
        yield
    finally:
        for n, m in saved.items():
            if m is None:
                sys.modules.pop(n, None)
            else:
                sys.modules[n] = m


class Persistent:
    """Pickles as NVlabs' persistent objects do."""

    def __init__(self, class_name: str, state: dict[str, Any], module_src: str = "# NVlabs module source\n") -> None:
        self.meta = dict(type="class", version=4, module_src=module_src, class_name=class_name, state=state)

    def __reduce__(self) -> Any:
        return (_reconstruct_persistent_obj, (self.meta,))


def record(module: torch.nn.Module, class_name: str, attrs: dict[str, dict[str, Any]], path: str = "") -> Persistent:
    """`module` as a persistent record; `attrs[path]` adds NVlabs' plain attributes at that sub-module."""
    children = OrderedDict()
    for name, sub in module.named_children():
        sub_path = f"{path}.{name}" if path else name
        children[name] = record(sub, type(sub).__name__, attrs, sub_path)
    state = {"training": False, "_parameters": OrderedDict(module._parameters),
             "_buffers": OrderedDict(module._buffers),  # NVlabs registers its FIR taps as persistent buffers
             "_non_persistent_buffers_set": set(), "_modules": children,
             "_forward_hooks": OrderedDict(), "_forward_pre_hooks": OrderedDict()}
    state.update(attrs.get(path, {}))
    return Persistent(class_name, state)


def nvlabs_attrs(cfg: NetworkConfig) -> dict[str, dict[str, Any]]:
    """The plain attributes NVlabs' modules keep that the importer reads (as NVlabs names them)."""
    res = cfg.resolution
    out: dict[str, dict[str, Any]] = {
        "": dict(z_dim=cfg.z_dim, c_dim=cfg.c_dim, w_dim=cfg.w_dim, img_resolution=res,
                 img_channels=cfg.img_channels, _init_args=(),
                 _init_kwargs=EasyDict(z_dim=cfg.z_dim, c_dim=cfg.c_dim, w_dim=cfg.w_dim, img_resolution=res,
                                       img_channels=cfg.img_channels,
                                       mapping_kwargs=EasyDict(num_layers=cfg.map_layers),
                                       synthesis_kwargs=EasyDict(channel_base=cfg.channel_base,
                                                                 channel_max=cfg.channel_max,
                                                                 num_fp16_res=0, conv_clamp=cfg.conv_clamp))),
        "mapping.fc0": dict(lr_multiplier=cfg.map_lr_mul),
        "synthesis.b4.conv1": dict(conv_clamp=cfg.conv_clamp),
    }
    r = 4
    while r <= res:
        out[f"synthesis.b{r}"] = dict(architecture="skip", resolution=r)
        r *= 2
    return out


def d_attrs(cfg: NetworkConfig, architecture: str = "resnet") -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {"": dict(c_dim=cfg.c_dim, img_resolution=cfg.resolution,
                                               img_channels=cfg.img_channels)}
    r = 8
    while r <= cfg.resolution:
        out[f"b{r}"] = dict(architecture=architecture, resolution=r)
        r *= 2
    out["b4.mbstd"] = dict(group_size=cfg.mbstd_group, num_channels=cfg.mbstd_features)
    return out


def make_networks(cfg: NetworkConfig, seed: int = 0) -> tuple[torch.nn.Module, torch.nn.Module]:
    torch.manual_seed(seed)
    G, D = build_generator(cfg), build_discriminator(cfg)
    with torch.no_grad():  # non-trivial noise strengths and w_avg, so a wrong map shows
        for name, p in G.named_parameters():
            if name.endswith("noise_strength"):
                p.fill_(0.1)
        G.mapping.w_avg.normal_()
    return G.eval(), D.eval()


def nvlabs_snapshot(cfg: NetworkConfig, seed: int = 0, *, extra: dict[str, Any] | None = None,
                    d_architecture: str = "resnet", g_class: str = "Generator") -> tuple[bytes, Any, Any]:
    """(pickle bytes, our G, our D) for a snapshot dict {G, D, G_ema, augment_pipe, training_set_kwargs}."""
    G, D = make_networks(cfg, seed)
    D_rec = record(D, "Discriminator", d_attrs(cfg, d_architecture))
    if "mbstd" not in D_rec.meta["state"]["_modules"]["b4"].meta["state"]["_modules"]:
        D_rec.meta["state"]["_modules"]["b4"].meta["state"]["_modules"]["mbstd"] = Persistent(
            "MinibatchStdLayer", {"_parameters": OrderedDict(), "_buffers": OrderedDict(), "_modules": OrderedDict(),
                                  "group_size": cfg.mbstd_group, "num_channels": cfg.mbstd_features})
    G_rec = record(G, g_class, nvlabs_attrs(cfg))
    snapshot = {"G": G_rec, "D": D_rec, "G_ema": G_rec, "augment_pipe": None,
                "training_set_kwargs": EasyDict(path="datasets/tiny.zip", resolution=cfg.resolution)}
    snapshot.update(extra or {})
    with _fake_nvlabs_modules():
        return pickle.dumps(snapshot), G, D


def dumps_with_fakes(obj: Any) -> bytes:
    with _fake_nvlabs_modules():
        return pickle.dumps(obj)
