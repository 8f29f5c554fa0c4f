"""stylemri: StyleGAN-family generative models for brain-MRI slices."""

__version__ = "0.1.0"
