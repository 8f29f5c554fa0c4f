"""stylemri: StyleGAN-family generative models for brain-MRI slices.

    model = stylemri.load("runs/00000-stylegan2-mni152-64")   # a TrainedModel
    images = model.generate(range(16), trunc=0.7)              # (16, C, R, R) in [-1, 1]
"""

from stylemri.model import TrainedModel, load
from stylemri.version import __version__

__all__ = ["__version__", "TrainedModel", "load"]
