"""`stylemri generate | mix | interpolate`: images from a trained run.

Every command loads the run's EMA generator at `--checkpoint` (latest, best or a kimg), writes under
`OUTDIR/kimg-<K>/...` so outputs of different checkpoints never mix, and prints where the files went.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

import stylemri
from stylemri import write_generated as gen
from stylemri import io
from stylemri.analysis import interpolate, mixing
from stylemri.cli.options import (
    add_batch, add_class, add_flag, add_model_args, add_num, add_sampling_args, 
    require_outdir,
)
from stylemri.config import to_dict
from stylemri.errors import UserError
from stylemri.model import TrainedModel


def open_for(args: argparse.Namespace, run: str | None = None, checkpoint: str | None = None, *,
             covariates_ok: bool = False) -> TrainedModel:
    """The model a command's RUN, --checkpoint and --device name. A --condition model only for the commands
    that feed it covariates (generate --set, interpolate --walk): the others refuse it in one line."""
    model = stylemri.load(run or args.run, checkpoint=checkpoint or args.checkpoint, device=args.device)
    if model.covariates is not None and not covariates_ok:
        refuse_covariate_model(model, getattr(args, "func", None))
    return model


def refuse_covariate_model(model: TrainedModel, command: object) -> None:
    name = getattr(command, "__name__", "this command").removeprefix("cmd_")
    raise UserError(f"{name}: {model.run_dir} is conditioned on covariates ({', '.join(model.covariates.names)}), "
                    "which this command does not feed yet; expected a class or unconditional model (covariate "
                    "models: generate --set, interpolate --walk, evaluate, explore, audit; docs/covariates.md)")


def out_folder(args: argparse.Namespace, model: TrainedModel, command: str | None) -> Path:
    """DIR/kimg-<K>[/command]; DIR defaults to the run's outputs/ folder."""
    root = Path(args.outdir) if args.outdir is not None else model.layout.outputs
    folder = root / model.tag
    return folder / command if command else folder


def class_of(args: argparse.Namespace, model: TrainedModel, *, default_first: bool) -> int | None:
    """--class as an index; for a conditional model without --class, the first class when asked."""
    k = model.class_index(getattr(args, "cls", None))
    if k is None and model.conditional and default_first:
        k = 0
    return k


def refuse_volumes(model: TrainedModel, command: str, instead: str) -> None:
    """One line, before any work, for a 3-D run given to a command that works on 2-D slice runs only."""
    if model.config.network.dims == 3:
        raise UserError(f"{model.run_dir}: a 3-D run (--dims 3); stylemri {command} works on 2-D slice runs only "
                        f"({instead})")


def describe(model: TrainedModel) -> str:
    classes = f"classes {', '.join(model.class_names)}" if model.conditional else "unconditional"
    if model.covariates is not None:
        classes = ("" if not model.conditional else classes + ", ") + f"covariates {', '.join(model.covariates.names)}"
    return f"{model.checkpoint} ({model.kimg:g} kimg, {model.resolution} px, {classes})"


# ----------------------------------------------------------------------------------------------- generate


def cmd_generate(args: argparse.Namespace) -> int:
    outdir = require_outdir(args)
    if args.seeds is not None:
        seeds = gen.parse_seeds(args.seeds)
        if args.num is not None and args.num != len(seeds):
            raise UserError(f"--num {args.num}: --seeds {args.seeds} names {len(seeds)} seeds; give one or the other")
    else:
        seeds = gen.seeds_from_num(16 if args.num is None else args.num)
    psi = args.trunc  # checked while parsing (options.psi)
    setting = args.set  # a dict (options.covariate_setting), checked against the model below
    model = open_for(args, covariates_ok=True)
    k = class_of(args, model, default_first=False)
    samples = gen.plan_samples(seeds, k, model.class_names, model.G.c_dim)
    folder = outdir / model.tag
    vector = model.covariate_vectors(1, setting, flag="--set")  # checked before anything is written
    if setting is not None and vector is not None:
        folder = folder / ("set_" + "_".join(f"{gen.safe_name(n)}-{gen.safe_name(v)}" for n, v in setting.items()))

    def images_of(part: list[gen.Sample]) -> torch.Tensor:
        return model.generate([s.seed for s in part], class_name=[s.class_index for s in part] if model.conditional
                              else None, trunc=psi, noise=args.noise, batch=args.batch, covariates=setting)

    if model.config.network.dims == 3:  # whole volumes: one .nii.gz (real affine) + mid-slice PNG each
        images = images_of(samples)
        gen.write_volume_samples(folder, samples, images, model.config.voxel_mm or 1.0)
        print(f"model: {describe(model)}")
        print(f"wrote {len(samples)} NIfTI volumes + mid-slice PNGs + grid.png + index.csv ({images.shape[-1]}^3 "
              f"voxels of {model.config.voxel_mm or 1.0:.3g} mm, psi {psi:g}, noise {args.noise}) to {folder}")
        return 0
    written = gen.write_samples(folder, samples, images_of, args.format)
    if vector is not None:  # the setting and the vector the networks saw, beside the images
        io.write_json(folder / "covariates.json", {"set": setting, "vector": vector[0].tolist(),
                                                   "scaling": to_dict(model.covariates)})
    what = "1 NIfTI volume" if args.format == "nifti" else f"{len(samples)} {args.format} images"
    print(f"model: {describe(model)}")
    if setting is not None:
        print(f"covariates: {', '.join(f'{n}={v}' for n, v in setting.items())}")
    print(f"wrote {what} + grid.png + index.csv ({model.resolution} px, psi {psi:g}, noise {args.noise}) to {folder}")
    if args.format == "nifti":
        print(f"volume: {written[0]}")
    return 0


# ---------------------------------------------------------------------------------------------------- mix


MAX_MIX_CELLS = 1024  # rows x columns of one style-mixing figure (32 x 32): every cell is one synthesis


def cmd_mix(args: argparse.Namespace) -> int:
    rows, cols = gen.parse_seeds(args.rows), gen.parse_seeds(args.cols)
    if len(rows) * len(cols) > MAX_MIX_CELLS:
        raise UserError(f"--rows {args.rows} --cols {args.cols}: {len(rows):,} x {len(cols):,} = "
                        f"{len(rows) * len(cols):,} cells; expected at most {MAX_MIX_CELLS:,} (e.g. 32 x 32)")
    psi = args.trunc  # checked while parsing (options.psi)
    model = open_for(args)
    G = model.G
    layers = mixing.parse_styles(args.layers, G.num_ws, G.resolution)
    k = class_of(args, model, default_first=True)
    result = mixing.style_mixing(G, rows, cols, layers, psi=psi, noise_mode=args.noise, class_index=k)
    if model.config.network.dims == 3:  # volumes: each cell shows its axial | coronal | sagittal mid-slices
        from dataclasses import replace as with_fields

        from stylemri.volumes_io import views_for

        result = with_fields(result, row_images=views_for(result.row_images, 3),
                             col_images=views_for(result.col_images, 3), mixed=views_for(result.mixed, 3))
    folder = out_folder(args, model, "mix")
    label = str(args.layers).replace(",", "_").replace("-", "to")
    path = io.save_image(folder / f"mix_{label}.png", mixing.mixing_grid(result))
    print(f"model: {describe(model)}")
    cls = f", class {model.class_names[k]}" if k is not None else ""
    print(f"layers {args.layers}: layers {', '.join(map(str, layers))} of {G.num_ws} taken from the column seeds{cls}")
    print(f"wrote style-mixing grid ({len(rows)} rows x {len(cols)} columns; top row: column seeds, left column: "
          f"row seeds) to {path}")
    return 0


# -------------------------------------------------------------------------------------------- interpolate


MAX_INTERPOLATE_IMAGES = 4096  # frames x rows of one walk: all are synthesised, then written as one GIF + strip


def _check_walk_size(args: argparse.Namespace, seeds: list[int]) -> None:
    """Refuse a walk whose frames would not fit (e.g. --frames 10000000) before the model loads."""
    keys = len([c for c in args.classes.split(",") if c.strip()]) if args.classes else len(seeds)
    rows = 1 + len(seeds) if args.classes else 1
    total = rows * (args.frames * (keys - 1) - (keys - 2)) if keys >= 2 and args.frames >= 2 else 0
    if total > MAX_INTERPOLATE_IMAGES:
        raise UserError(f"--frames {args.frames}: {total:,} images in the walk ({rows} row(s), {keys} keyframes); "
                        f"expected at most {MAX_INTERPOLATE_IMAGES:,}: fewer frames or seeds")


def cmd_interpolate(args: argparse.Namespace) -> int:
    psi = args.trunc  # checked while parsing (options.psi)
    if args.zoom < 1 or args.zoom > 64:
        raise UserError(f"--zoom {args.zoom}: expected an integer from 1 to 64")
    if not 0 < args.fps <= 100:  # also NaN
        raise UserError(f"--fps {args.fps}: expected frames per second between 0 and 100")
    seeds = gen.parse_seeds(args.seeds) if args.seeds else []
    _check_walk_size(args, seeds)
    if args.walk is not None:
        return _covariate_walk(args, seeds, psi)
    if args.set is not None:
        raise UserError("--set: expected --walk NAME=START:STOP with it (the covariate that moves)")
    model = open_for(args, covariates_ok=True)
    G = model.G
    folder = out_folder(args, model, "interpolate")
    if model.covariates is not None:
        raise UserError(f"this model is conditioned on {', '.join(model.covariates.names)}: walk one covariate with "
                        f"--walk NAME=START:STOP (and --set for the others)")
    if args.classes:
        names = [c.strip() for c in args.classes.split(",") if c.strip()]
        if not G.c_dim:
            raise UserError(f"--classes {args.classes}: this model is unconditional; class walks need a "
                            "conditional model")
        ks = [model.class_index(c) for c in names]
        frames = interpolate.class_walk(G, ks, args.frames, seeds=seeds, noise_mode=args.noise,
                                        num_samples=args.w_samples)
        stem = "walk_" + "_to_".join(gen.safe_name(c) for c in names)
        what = f"class-mean walk {' -> '.join(names)}" + (f" (+ seeds {','.join(map(str, seeds))})" if seeds else "")
    else:
        if len(seeds) < 2:
            raise UserError("--seeds: expected at least two seeds (e.g. --seeds 0,1,2), or --classes for a class walk")
        k = class_of(args, model, default_first=True)
        frames = interpolate.interpolate_seeds(G, seeds, args.space, args.frames, psi=psi, noise_mode=args.noise,
                                               class_index=k)
        stem = f"seeds_{'_'.join(map(str, seeds[:8]))}_{args.space}"
        what = f"{'lerp in W' if args.space == 'w' else 'slerp in Z'} through seeds {','.join(map(str, seeds))}"
        if k is not None:
            what += f", class {model.class_names[k]}"
    from stylemri.volumes_io import views_for

    frames = views_for(frames, model.config.network.dims)  # 3-D runs: the three mid-slices of each frame
    gif = interpolate.write_gif(folder / f"{stem}.gif", frames, duration_ms=round(1000 / args.fps), zoom=args.zoom)
    strip = interpolate.write_strip(folder / f"{stem}.png", frames, zoom=args.zoom)
    n = frames.shape[-4] if frames.ndim == 5 else frames.shape[0]
    print(f"model: {describe(model)}")
    print(f"{what}: {n} frames")
    print(f"wrote animation {gif}")
    print(f"wrote strip {strip}")
    return 0


def _covariate_walk(args: argparse.Namespace, seeds: list[int], psi: float) -> int:
    """--walk age=60:90: each seed's frames at evenly spaced values; strip, GIF and difference figure."""
    from stylemri.analysis.covariate_walk import covariate_walk, difference_figure

    name, start, stop = args.walk  # parsed by options.covariate_walk
    fixed = args.set or {}
    if args.classes:
        raise UserError("--classes with --walk: expected one of them (a class walk or a covariate walk)")
    model = open_for(args, covariates_ok=True)
    walk = covariate_walk(model, seeds or [0], name, start, stop, args.frames, fixed, psi=psi, noise=args.noise,
                          class_name=class_of(args, model, default_first=True))
    folder = out_folder(args, model, "interpolate")
    stem = f"walk_{gen.safe_name(walk.name)}_{start:g}-{stop:g}_seeds_{'_'.join(map(str, walk.seeds[:8]))}"
    gif = interpolate.write_gif(folder / f"{stem}.gif", walk.frames, duration_ms=round(1000 / args.fps),
                                zoom=args.zoom)
    strip = interpolate.write_strip(folder / f"{stem}.png", walk.frames, zoom=args.zoom)
    diff = io.save_figure(difference_figure(walk), folder / f"{stem}_difference.png")
    print(f"model: {describe(model)}")
    print(f"{walk.name} {start:g} -> {stop:g} in {len(walk.values)} frames, seeds {','.join(map(str, walk.seeds))}, "
          f"same noise" + (f", {', '.join(f'{k}={v}' for k, v in fixed.items())}" if fixed else ""))
    print(f"wrote animation {gif}")
    print(f"wrote strip {strip}")
    print(f"wrote difference map {diff}")
    return 0


# ------------------------------------------------------------------------------------------------ register


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("generate", help="generate images from a trained run (per seed and class, plus a grid)",
                       description="Generate images from a trained run: one file per image named by seed and class, "
                                   "a grid (one row per class) and index.csv. Seed s always gives the same latent "
                                   "(NVlabs' RandomState(s)); with --noise const reruns are byte-identical. Without "
                                   "--class, a conditional model draws every seed for every class.")
    add_model_args(p, outdir_help="output folder (required); files go to DIR/kimg-<K>/ for the checkpoint used")
    add_num(p, None, f"number of seeds, 0..N-1 (default: 16; at most {gen.MAX_IMAGES:,})")
    add_flag(p, "--seeds", default=None, help="seeds, e.g. 0-9,42 (instead of --num)")
    add_class(p, "class to generate (conditional models; default: every class)")
    add_flag(p, "--set", default=None, help="covariates of a --condition model, e.g. age=80,sex=F (within the "
                                            "training range; files go to DIR/kimg-<K>/set_age-80_sex-F/)")
    add_sampling_args(p)
    p.add_argument("--format", choices=gen.FORMATS, default="png",
                   help="png: 8-bit, exactly [-1,1] -> [0,255] rounded and clipped; png16: 16-bit; npy: float32 "
                        "as generated; nifti: all slices stacked into one volume.nii.gz (default: png)")
    add_batch(p, 1, "images per forward pass; 1 (default) makes each image independent of the others in the run, "
                    "bit for bit; larger is faster but may change the last bit")
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("mix", help="style-mixing figure: which layers carry shape vs texture",
                       description="Style mixing (Karras et al. 2019, fig. 3): each cell is its row seed with the "
                                   "--layers taken from its column seed. coarse = layers at 4-8 px (0-3), "
                                   "middle = 16-32 px (4-7), fine = 64 px and up (8+); below 64 px the layers are "
                                   "split in three equal groups.")
    add_model_args(p)
    p.add_argument("--rows", required=True, metavar="SEEDS", help="row seeds (keep their other layers), e.g. 0-4")
    p.add_argument("--cols", required=True, metavar="SEEDS", help="column seeds (give the --layers), e.g. 10-14")
    add_flag(p, "--layers", default="coarse",
             help="layers copied from the column seeds: a group or indices like 0-3 or 0,2,5 (default: coarse)")
    add_class(p, "class for a conditional model (default: the first class)")
    add_sampling_args(p)
    p.set_defaults(func=cmd_mix)

    p = sub.add_parser("interpolate", help="latent walks between seeds or class means (GIF + PNG strip)",
                       description="Walk between seeds (lerp in W, or slerp in Z) or, with --classes on a "
                                   "conditional model, between the class means (mean w of each class): the "
                                   "'progression from CN to AD' picture. Writes an animated GIF and a PNG strip.")
    add_model_args(p)
    add_flag(p, "--seeds", default=None,
             help="seeds to walk through in order; with --classes, extra rows walking each seed's own "
                        "latent from class to class")
    p.add_argument("--space", choices=interpolate.SPACES, default="w",
                   help="w: linear in W (default); z: spherical in Z")
    p.add_argument("--frames", type=int, default=16, metavar="F", help="frames per segment (default: 16)")
    add_flag(p, "--classes", default=None, help="walk between these classes' mean w, e.g. NC,AD")
    add_class(p, "class of a seed walk on a conditional model (default: the first class)")
    add_flag(p, "--w-samples", default=2000, help="latents averaged per class mean (default: 2000)")
    add_flag(p, "--walk", default=None, help="covariate walk of a --condition model, e.g. age=60:90: same seed "
                                             "(--seeds, default 0) and noise, only the covariate moves; also writes "
                                             "the difference to the first frame")
    add_flag(p, "--set", default=None, help="with --walk: the other covariates, e.g. sex=F")
    p.add_argument("--fps", type=float, default=12.0, help="GIF frames per second (default: 12)")
    p.add_argument("--zoom", type=int, default=1, metavar="K",
                   help="enlarge the GIF and strip K times, nearest neighbour (default: 1)")
    add_sampling_args(p)
    p.set_defaults(func=cmd_interpolate)


__all__ = ["register", "open_for", "refuse_covariate_model", "out_folder", "class_of", "refuse_volumes", "describe"]
