"""The one place `stylemri explore` touches the trained model.

Every request that needs the generator goes through `ModelService`, which holds the single loaded model
and one lock: the generator's constant-noise buffers are swapped while a projection is rendered, and
torch modules are not documented as safe for concurrent forward passes, so image requests run one at a
time (each takes milliseconds at demo sizes). Projections run on a private copy of the generator, so a
long projection does not hold the lock. Only this file knows the model API (`stylemri.load` ->
`TrainedModel`, `stylemri.networks.sampling`).
"""

from __future__ import annotations

import copy
import math
import secrets
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

import stylemri
from stylemri.analysis import edit, interpolate, mixing
from stylemri.analysis import project as proj
from stylemri.config import CovariateScaling
from stylemri.errors import UserError
from stylemri.model import TrainedModel
from stylemri.networks import sampling

MAX_PROJECTIONS = 8  # projections kept for editing; older ones are forgotten


@dataclass(frozen=True)
class Projection:
    """A projected upload: its latent, the noise maps found with it, the prepared target, the losses."""

    id: str
    name: str
    target: torch.Tensor  # (C, R, R) in [-1, 1]
    ws: torch.Tensor  # (num_ws, w_dim)
    noise: dict[str, np.ndarray]
    class_index: int | None
    steps: int
    initial_loss: float
    final_loss: float
    ms_ssim: float


class ModelService:
    """One trained generator shared by all requests; methods return images (C, R, R) float32 in [-1, 1]."""

    def __init__(self, model: TrainedModel, *, class_samples: int = 2000) -> None:
        self.model = model
        self.G = model.G
        self.class_samples = class_samples
        self._lock = threading.Lock()
        self._project_lock = threading.Lock()
        self._means: torch.Tensor | None = None
        self._const_noise = {q: getattr(m, n).detach().cpu().numpy().copy()
                             for q, m, n in proj.find_noise_buffers(self.G)}
        self._projections: OrderedDict[str, Projection] = OrderedDict()

    @classmethod
    def open(cls, run: str | Path, checkpoint: str = "latest", device: str = "auto") -> "ModelService":
        """Load the EMA generator of `run` at `checkpoint` (latest | best | KIMG)."""
        return cls(stylemri.load(run, checkpoint=checkpoint, device=device))

    # ------------------------------------------------------------------------------------------ facts

    @property
    def class_names(self) -> list[str]:
        return list(self.model.class_names) if self.G.c_dim else []

    @property
    def resolution(self) -> int:
        return int(self.G.resolution)

    @property
    def channels(self) -> int:
        return int(self.G.img_channels)

    @property
    def num_ws(self) -> int:
        return int(self.G.num_ws)

    @property
    def default_axis(self) -> str:
        return str(self.model.config.data.axis)

    @property
    def covariates(self) -> CovariateScaling | None:
        """A --condition model's covariates and their stored scaling (None for a class or unconditional model)."""
        return self.model.covariates

    def covariate_info(self) -> dict[str, Any] | None:
        """The page's sliders: per covariate its kind and training range (continuous, min..max of the stored
        scaling) or categories; `missing_allowed` for a --missing indicator model (a value may be omitted)."""
        scaling = self.covariates
        if scaling is None:
            return None
        columns = [{"name": c.name, "kind": c.kind, "low": c.low, "high": c.high, "mean": c.mean}
                   if c.kind == "continuous" else {"name": c.name, "kind": c.kind, "categories": list(c.categories)}
                   for c in scaling.columns]
        return {"columns": columns, "missing_allowed": scaling.missing == "indicator"}

    def check_setting(self, setting: dict[str, str] | None) -> None:
        """Refuse a setting the model cannot take, in `generate --set`'s words (one validator for both)."""
        self.model.covariate_vectors(1, setting, flag="set")

    def _condition(self, classes: list[int | None], setting: dict[str, str] | None) -> torch.Tensor:
        """The networks' condition vectors: class one-hot (conditional models), then the encoded setting."""
        return sampling.condition_for(self.G, classes, self.model.covariate_vectors(len(classes), setting, flag="set"))

    def info(self) -> dict[str, Any]:
        """What `GET /api/model` reports."""
        return {
            "classes": self.class_names,
            "resolution": self.resolution,
            "kimg": float(self.model.kimg),
            "checkpoint": str(self.model.checkpoint),
            "num_ws": self.num_ws,
            "run": self.model.run_name,
            "channels": self.channels,
            "conditional": bool(self.G.c_dim),
            "style_groups": mixing.style_groups(self.num_ws, self.resolution),
            "axis": self.default_axis,
            "covariates": self.covariate_info(),
        }

    def style_layers(self, spec: str) -> list[int]:
        """'coarse' | 'middle' | 'fine' | layer indices -> layer indices (errors name the valid range)."""
        return mixing.parse_styles(spec, self.num_ws, self.resolution)

    # -------------------------------------------------------------------------------------- generation

    def generate(self, seed: int, class_index: int | None, psi: float,
                 setting: dict[str, str] | None = None) -> torch.Tensor:
        """Exactly what `stylemri generate RUN --seeds SEED --class C --trunc PSI [--set SETTING]` writes
        (noise const, batch 1): the same seed and noise at every setting, so only the covariates move."""
        with self._lock:
            return self.model.generate([seed], class_name=class_index, trunc=psi, noise="const", batch=1,
                                       covariates=setting)[0]

    def _ws(self, seeds: list[int], classes: list[int | None], psi: float,
            setting: dict[str, str] | None = None) -> torch.Tensor:
        z = sampling.seed_latents(seeds, self.G.z_dim)
        return sampling.map_latents(self.G, z, self._condition(classes, setting), psi=psi).cpu()

    def _direction(self, to_class: int, from_class: int) -> torch.Tensor:
        """mean w(to) - mean w(from); the class means are computed once (caller holds the lock)."""
        if self._means is None:
            self._means = sampling.class_mean_ws(self.G, num_samples=self.class_samples).cpu()
        return self._means[to_class] - self._means[from_class]

    def walk(self, seed: int | None, from_class: int, to_class: int, t: float,
             psi: float) -> tuple[torch.Tensor, torch.Tensor]:
        """(image, image at t = 0): the seed's w for `from_class` (or the class mean when seed is None)
        moved t times the class-mean difference towards `to_class` (stylemri edit's direction)."""
        with self._lock:
            direction = self._direction(to_class, from_class)
            if seed is None:
                ws = self._means[from_class].view(1, -1).repeat(self.num_ws, 1)  # type: ignore[index]
            else:
                ws = self._ws([seed], [from_class], psi)[0]
            images, _ = edit.edit_sequence(self.G, ws, direction, [t, 0.0])
        return images[0], images[1]

    def interpolate(self, seed_a: int, class_a: int | None, seed_b: int, class_b: int | None, t: float,
                    space: str, psi: float, setting: dict[str, str] | None = None) -> torch.Tensor:
        """The image at t in [0, 1] on the way from (seed_a, class_a) to (seed_b, class_b): lerp in W,
        or slerp in Z (one class only: Z carries no class); both ends at the same covariate `setting`."""
        with self._lock:
            if space == "z":
                if class_a != class_b:
                    raise UserError("space z: interpolates between seeds of one class; use space w between classes")
                za, zb = sampling.seed_latents([seed_a, seed_b], self.G.z_dim)
                z = interpolate.slerp(za, zb, t).view(1, -1)
                ws = sampling.map_latents(self.G, z, self._condition([class_a], setting), psi=psi).cpu()
            else:
                wa, wb = self._ws([seed_a, seed_b], [class_a, class_b], psi, setting)
                ws = interpolate.lerp(wa, wb, t).unsqueeze(0)
            return sampling.synthesize(self.G, ws, noise="const")[0]

    def mix(self, seed: int, seed2: int, class_index: int | None, layers: list[int], psi: float,
            setting: dict[str, str] | None = None) -> torch.Tensor:
        """`seed` with the `layers` styles taken from `seed2` (stylemri mix, one cell), both at `setting`."""
        vector = self.model.covariate_vectors(1, setting, flag="set")
        with self._lock:
            result = mixing.style_mixing(self.G, [seed], [seed2], layers, psi=psi, noise_mode="const",
                                         class_index=class_index, covariates=vector)
        return result.mixed[0, 0]

    # -------------------------------------------------------------------------------------- projection

    def load_target(self, path: Path, slice_index: int | None, axis: str | None) -> torch.Tensor:
        """A real slice prepared exactly as training data is (stylemri project's loader)."""
        return proj.load_target(path, self.resolution, self.channels, slice_index=slice_index,
                                axis=axis or self.default_axis)

    def project(self, target: torch.Tensor, class_index: int | None, steps: int, name: str) -> Projection:
        """Project `target` into W (stylemri project's optimiser) and keep it for `render_projection`.
        One projection at a time; it runs on a copy of the generator, so image requests go on meanwhile."""
        with self._project_lock:
            with self._lock:
                G = copy.deepcopy(self.G)
            result = proj.project(G, target, steps=steps, class_index=class_index)
        last = result.history[-1] if result.history else {}
        record = Projection(id=secrets.token_hex(8), name=name, target=result.target, ws=torch.from_numpy(result.ws),
                            noise=result.noise, class_index=class_index, steps=steps,
                            initial_loss=float(result.initial_loss), final_loss=float(result.final_loss),
                            ms_ssim=float(last.get("ms_ssim", math.nan)))
        with self._lock:
            self._projections[record.id] = record
            while len(self._projections) > MAX_PROJECTIONS:
                self._projections.popitem(last=False)
        return record

    def projection(self, pid: str) -> Projection:
        with self._lock:
            found = self._projections.get(pid)
        if found is None:
            raise KeyError(pid)
        return found

    def render_projection(self, record: Projection, from_class: int | None, to_class: int | None,
                          t: float) -> tuple[torch.Tensor, torch.Tensor]:
        """(image, reconstruction): the projected latent moved t times the class-mean difference (t = 0 or
        no classes: the reconstruction), rendered with the noise maps found by the projection."""
        with self._lock:
            direction = torch.zeros(self.G.w_dim) if from_class is None or to_class is None else \
                self._direction(to_class, from_class)
            proj.set_noise_buffers(self.G, record.noise)
            try:
                images, _ = edit.edit_sequence(self.G, record.ws, direction, [t, 0.0])
            finally:
                proj.set_noise_buffers(self.G, self._const_noise)
        return images[0], images[1]


__all__ = ["MAX_PROJECTIONS", "ModelService", "Projection"]
