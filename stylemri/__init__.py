"""stylemri: StyleGAN-family generative models for brain-MRI slices.

    model = stylemri.load("runs/00000-stylegan2-mni152-64")   # a TrainedModel
    images = model.generate(range(16), trunc=0.7)              # (16, C, R, R) in [-1, 1]
"""

__version__ = "0.1.0"

from stylemri.model import TrainedModel, load  # noqa: E402  (after __version__, which lower layers read)

__all__ = ["__version__", "TrainedModel", "load"]
