"""The one place the audit touches a trained model (swap here when the model API changes).

`open_audit_model(run, checkpoint, device)` returns a `AuditModel`: class names, resolution, the run's data
configuration, seeded uint8 images per class (and per covariate setting, for a --condition run), the
discriminator's score of real images (for the white-box membership attack), and the covariate proof.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from stylemri.io import to_uint8
from stylemri.networks.sampling import one_hot


@dataclass
class AuditModel:
    """A trained run as the audit sees it (a wrapper around `stylemri.TrainedModel`, not a network)."""

    model: Any  # stylemri.TrainedModel
    trunc: float = 1.0

    @property
    def class_names(self) -> tuple[str, ...]:
        """The classes the generator is conditioned on; () for an unconditional model."""
        return tuple(self.model.class_names) if self.model.conditional else ()

    @property
    def resolution(self) -> int:
        return int(self.model.resolution)

    @property
    def covariates(self) -> Any:
        """A --condition run's stored covariate scaling (config.CovariateScaling), None otherwise."""
        return self.model.covariates

    @property
    def white_box(self) -> bool:
        """Whether D can score real images for the membership attack: not for a covariate model, whose D
        scores an image against its covariates, which holdout images do not carry."""
        return self.covariates is None

    @property
    def data_config(self) -> Any:
        return self.model.config.data

    @property
    def default_outdir(self) -> Path:
        """RUN/audit/kimg-K: outputs of different checkpoints never mix."""
        return self.model.layout.audits / self.model.tag

    def describe(self) -> dict[str, Any]:
        return {"checkpoint": str(self.model.checkpoint), "kimg": self.model.kimg, "truncation_psi": self.trunc,
                "noise_mode": "const"}

    def generate(self, seeds: Sequence[int], class_name: str | None, batch_size: int = 32,
                 covariates: Sequence[dict[str, Any]] | None = None) -> np.ndarray:
        """uint8 (N, C, R, R): image i depends on seeds[i] (and the class, and its covariate setting) only."""
        if not len(seeds):
            return np.zeros((0, self.model.G.img_channels, self.resolution, self.resolution), np.uint8)
        name = class_name if self.model.conditional else None
        return to_uint8(self.model.generate(list(seeds), class_name=name, trunc=self.trunc, noise="const",
                                            batch=batch_size, covariates=covariates))

    def prove_covariates(self, ds: Any, num: int, seed: int) -> dict[str, Any]:
        """evaluate's covariate proof (audit.covariate_proof) of this model against its training data `ds`."""
        from stylemri.audit.covariate_proof import prove_covariates

        return prove_covariates(self.model, ds, num, seed=seed, trunc=self.trunc)

    @torch.no_grad()
    def discriminator_scores(self, images: np.ndarray, class_name: str | None, batch_size: int = 64) -> np.ndarray:
        """D's logit for uint8 real images (higher = 'looks like training data')."""
        D, dev = self.model.discriminator(), self.model.device
        index = self.model.class_index(class_name) if self.model.conditional else None
        out = []
        for s in range(0, len(images), batch_size):
            x = torch.from_numpy(images[s:s + batch_size]).float().div(127.5).sub(1.0).to(dev)
            c = None if index is None else one_hot([index] * len(x), self.model.G.c_dim, device=dev)
            out.append(D(x, c).float().cpu().numpy().reshape(-1))
        return np.concatenate(out) if out else np.zeros(0, np.float32)


def open_audit_model(run: str | os.PathLike, checkpoint: str = "latest", device: str = "auto",
                     trunc: float = 1.0) -> AuditModel:
    """Open a trained run (its EMA generator at `checkpoint`) for the audit."""
    import stylemri
    from stylemri.errors import UserError

    model = stylemri.load(run, checkpoint=checkpoint, device=device)
    if model.config.network.dims == 3:  # every audit stage compares 2-D (C, R, R) images
        raise UserError(f"{run}: a 3-D run (--dims 3); stylemri audit works on 2-D slice runs only (for volumes: "
                        f"stylemri evaluate RUN --metrics swd,fid,kid,memorization)")
    return AuditModel(model, trunc=trunc)
