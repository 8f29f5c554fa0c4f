"""Augmentation quality (what resampling keeps) and throughput, bgc pipe vs. one bilinear resampling.

    python benchmarks/bench_augment.py [--data builtin:mni152] [--resolutions 32,64,256] [--batch 16] [--repeats 5]
                                       [--device cpu|cuda]

1. Spectral power kept, builtin data at 64 px, p = 1 for isotropic scale and arbitrary rotation only:
   median over images of augmented / original power in 4 equal-width radial bands of the 2-D DFT
   (|f| in [0, .125), [.125, .25), [.25, .375), [.375, .5] cycles/pixel; corners beyond 0.5 left out;
   `augment.radial_band_power`). The same matrices are executed four ways: one bilinear grid_sample
   at 1x (stylemri before bgc), NVlabs' recipe (sym6 2x, bilinear, reflect padding), the same with
   black padding, and stylemri's (sym6 2x, bicubic, black padding).
2. Exactness of an x-flip through one sym6 resampling (NVlabs) vs. stylemri's exact blit.
3. Padding: the fraction of 'bg' augmented images (p = 1) in which reflect padding puts visible
   content (> 0.05 from black) where black padding has background.
4. Throughput, images/s, median of --repeats: bgc at p = 1 forward, forward + backward, and the 1x
   bilinear baseline forward, at each resolution with batch --batch.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from stylemri.config import DataConfig
from stylemri.data import load_dataset
from stylemri.training import augment as A
from stylemri.training.rng import BatchRandom


def one_bilinear_resample(x: torch.Tensor, g_inv: torch.Tensor) -> torch.Tensor:
    """The pre-bgc way: the composed matrix applied by one bilinear grid_sample at 1x, black outside."""
    n, c, h, w = x.shape
    ref = g_inv[:, 0, 0]
    g = A._scale(2 / w, 2 / h, ref) @ g_inv @ A._scale(w / 2, h / 2, ref)
    grid = F.affine_grid(g[:, :2, :].to(x.dtype), [n, c, h, w], align_corners=False)
    return F.grid_sample(x + 1, grid, mode="bilinear", padding_mode="zeros", align_corners=False) - 1


def baseline_pipe(x: torch.Tensor, spec: A.AugmentSpec, p: float, rand: BatchRandom) -> torch.Tensor:
    """bgc parameters, executed the pre-bgc way (one 1x bilinear resampling, then the colour map)."""
    blit_g, general_g = A.geometry(spec, rand, p, x.shape[3], x.shape[2])
    g = torch.eye(3, device=x.device).repeat(len(x), 1, 1)
    for part in (blit_g, general_g):
        g = g @ part if part is not None else g
    x = one_bilinear_resample(x, g)
    col = A.color(spec, A._Draw(rand, p))
    return x if col is None else A._apply_color(x, *col)


def spectral(x: torch.Tensor) -> None:
    spec = A.augment_spec(("scale", "rotate"))
    _, g = A.geometry(spec, BatchRandom(0, len(x)), 1.0, x.shape[3], x.shape[2])
    margins = A.pad_margins(g, x.shape[3], x.shape[2], len(A.SYM6) // 4)
    rows = {
        "one bilinear resampling at 1x (stylemri before)": one_bilinear_resample(x, g),
        "sym6 2x, bilinear, reflect pad (NVlabs' recipe)": A.warp(x, g, margins, "reflect", mode="bilinear"),
        "sym6 2x, bilinear, black pad": A.warp(x, g, margins, "black", mode="bilinear"),
        "sym6 2x, bicubic, black pad (stylemri now)": A.AugmentPipe(spec)(x, 1.0, BatchRandom(0, len(x))),
    }
    print(f"\nspectral power kept, {len(x)} images at {x.shape[-1]} px, p = 1 for scale + rotate "
          "(median per image, 4 radial bands of [0, 0.5] cycles/px):")
    print(f"  {'pipeline':52s} {'band 1':>7s} {'band 2':>7s} {'band 3':>7s} {'band 4':>7s}")
    for name, y in rows.items():
        kept = A.band_power_kept(x, y)
        print(f"  {name:52s} " + " ".join(f"{v:7.3f}" for v in kept))
    print("  issue 11's figures for the top two bands: NVlabs 0.84 / 0.60, stylemri before 0.58 / 0.41")


def exactness_and_padding(x: torch.Tensor) -> None:
    n = len(x)
    flip = A._scale(-torch.ones(n), 1.0, torch.zeros(n))
    through_warp = A.warp(x, flip, A.pad_margins(flip, x.shape[3], x.shape[2], 3), "reflect", mode="bilinear")
    blit = A.blit(x, flip)
    err_warp, err_blit = (through_warp - x.flip(-1)).abs().max(), (blit - x.flip(-1)).abs().max()
    print(f"\nx-flip, max |error| on [-1, 1]: one sym6 resampling (NVlabs) {err_warp:.4f}, "
          f"exact blit (stylemri) {err_blit:.2e}")
    black = A.AugmentPipe("bg")(x, 1.0, BatchRandom(1, n))
    reflect = A.AugmentPipe("bg", pad="reflect")(x, 1.0, BatchRandom(1, n))
    border = torch.cat([x[:, :, [0, -1], :].flatten(1), x[:, :, :, [0, -1]].flatten(1)], 1)
    mirrored = ((reflect - black).abs().amax(dim=(1, 2, 3)) > 0.05).float().mean()
    print(f"padding: border pixels of the data at -1 (black): {(border == -1).float().mean():.1%}; "
          f"'bg' at p = 1 with reflect padding shows mirrored content in {mirrored:.1%} of images")


def rate(fn, batch: int, repeats: int, device: torch.device) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return batch / statistics.median(times)


def throughput(data: str, resolutions: list[int], batch: int, repeats: int, device: torch.device) -> None:
    print(f"\nthroughput, images/s (batch {batch}, median of {repeats}, {torch.get_num_threads()} threads):")
    print(f"  {'px':>5s} {'bgc fwd':>9s} {'bgc fwd+bwd':>12s} {'1x bilinear fwd':>16s}")
    pipe, spec = A.AugmentPipe("bgc").to(device), A.augment_spec("bgc")
    for res in resolutions:
        ds = load_dataset(DataConfig(source=data, resolution=res))
        x = ds.batch(list(range(batch)))[0].to(device)
        xg = x.clone().requires_grad_(True)

        def rand() -> BatchRandom:
            return BatchRandom(2, batch, device=device)

        fwd = rate(lambda: pipe(x, 1.0, rand()), batch, repeats, device)
        both = rate(lambda: pipe(xg, 1.0, rand()).square().sum().backward(), batch, repeats, device)
        base = rate(lambda: baseline_pipe(x, spec, 1.0, rand()), batch, repeats, device)
        print(f"  {res:5d} {fwd:9.1f} {both:12.1f} {base:16.1f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="builtin:mni152")
    ap.add_argument("--resolutions", default="32,64,256")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--torch-threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    torch.set_num_threads(args.torch_threads)
    print(f"torch {torch.__version__}")
    ds = load_dataset(DataConfig(source=args.data, resolution=64))
    x = ds.batch(list(range(len(ds))))[0]
    with torch.no_grad():
        spectral(x)
        exactness_and_padding(x)
    throughput(args.data, [int(r) for r in args.resolutions.split(",")], args.batch, args.repeats,
               torch.device(args.device))


if __name__ == "__main__":
    main()
