"""StyleGAN2 on whole volumes: the 2-D model of `stylegan2.py` with every convolution, noise input and
resampling filter made 3-D (as 3D-StyleGAN, Hong et al. 2021, did in TensorFlow). The layers are the 2-D
ones built with `dims=3` (`layers.EqualConv`, `stylegan2.SynthesisBlock`, `stylegan2.modulated_conv`); these
two classes only set `dims` and the smaller volume channel counts.

Modulated / demodulated 3x3x3 convolution, per-voxel noise with a learned strength, skip generator
(toRGB of every resolution upsampled and summed), residual discriminator, minibatch stddev, projection
conditioning; the mapping network and `Generator` wrapper are the 2-D ones. Volumes are (N, C, D, H, W)
with D = inferior->superior, H = posterior->anterior, W = left->right (RAS voxel order reversed), so a
flip of the last axis is a left-right flip exactly as for slices.

Channel counts follow the same rule, min(channel_base / res, channel_max); the 3-D defaults
(`VOLUME_CHANNEL_BASE`, `VOLUME_CHANNEL_MAX`) are smaller because a 3x3x3 conv costs 3x a 3x3 one per
voxel and there are R times more voxels: at 64^3 the largest activations are 32 channels x 64^3.
"""

from __future__ import annotations

from stylemri.networks.stylegan2 import Discriminator, SynthesisNetwork

VOLUME_CHANNEL_BASE = 2048  # channels(res) = min(2048 / res, 256): 256 at 4-8, 128 at 16, 64 at 32, 32 at 64
VOLUME_CHANNEL_MAX = 256


class SynthesisNetwork3d(SynthesisNetwork):
    """ws (N, num_ws, w_dim) -> volume (N, C, R, R, R): the 2-D network's layout and w indexing, 3-D blocks."""

    dims = 3

    def __init__(self, w_dim: int, resolution: int, img_channels: int, channel_base: int = VOLUME_CHANNEL_BASE,
                 channel_max: int = VOLUME_CHANNEL_MAX, conv_clamp: float | None = None) -> None:
        super().__init__(w_dim, resolution, img_channels, channel_base, channel_max, conv_clamp=conv_clamp)


class Discriminator3d(Discriminator):
    """Residual 3-D StyleGAN2 discriminator (3x3x3 convs) with a projection-conditional 4^3 head."""

    dims = 3

    def __init__(self, c_dim: int, resolution: int, img_channels: int, channel_base: int = VOLUME_CHANNEL_BASE,
                 channel_max: int = VOLUME_CHANNEL_MAX, mbstd_group: int | None = 4, mbstd_features: int = 1,
                 conv_clamp: float | None = None, map_layers: int = 8, map_lr_mul: float = 0.01,
                 cov_dim: int = 0) -> None:
        super().__init__(c_dim, resolution, img_channels, channel_base, channel_max, mbstd_group, mbstd_features,
                         conv_clamp, map_layers, map_lr_mul, cov_dim=cov_dim)


__all__ = ["Discriminator3d", "SynthesisNetwork3d", "VOLUME_CHANNEL_BASE", "VOLUME_CHANNEL_MAX"]
