"""stylemri: StyleGAN-family generative models for brain-MRI slices."""

__version__ = "0.1.0"


def load(run_or_checkpoint, *, device="cpu"):  # type: ignore[no-untyped-def]
    """The EMA generator of a training run or checkpoint: see `stylemri.api.load` (imported lazily)."""
    from stylemri.api import load as _load

    return _load(run_or_checkpoint, device=device)
