"""`stylemri project | edit | embed | compare`: inverting real scans and analysing a trained run.

Outputs go to `OUTDIR/kimg-<K>/<command>/...` (OUTDIR defaults to RUN/outputs); every command prints
where its files went.
"""

from __future__ import annotations

import argparse
import copy
import io as _io
import math
import re
from pathlib import Path

import numpy as np
import torch

from stylemri import write_generated as gen
from stylemri import io
from stylemri.analysis import compare, edit, embed, interpolate, mixing, project
from stylemri.cli.options import (
    add_alias, add_class, add_flag, add_model_args, add_num, add_sampling_args, add_seed, add_trunc,
)
from stylemri.cli.use import class_of, describe, open_for, out_folder, refuse_volumes
from stylemri.config import replace
from stylemri.errors import UserError
from stylemri.model import TrainedModel
from stylemri.networks.sampling import one_hot


def _np_savez(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    buf = _io.BytesIO()
    np.savez(buf, **arrays)
    with io.atomic_write(path) as f:
        f.write(buf.getvalue())
    return path


def load_real_data(model: TrainedModel, source: str, split: str | None = None):
    """The dataset at `source`, prepared like the run's training data (same axis, channels, resolution)."""
    from stylemri.data import load_dataset

    cfg = model.config.data
    cfg = replace(cfg, source=source, classes=None, xflip=False, split=split or cfg.split,
                  resolution=max(cfg.resolution, model.G.resolution))
    return load_dataset(cfg)


def sample_per_class(ds, n: int, seed: int) -> np.ndarray:
    """Up to `n` indices per class, drawn without replacement (seeded), classes in order."""
    rng = np.random.RandomState(seed)
    labels = np.asarray(ds.labels)
    out = [rng.choice(np.flatnonzero(labels == k), size=min(n, int((labels == k).sum())), replace=False)
           for k in range(len(ds.class_names)) if (labels == k).any()]
    return np.sort(np.concatenate(out)) if out else np.zeros(0, np.int64)


# ---------------------------------------------------------------------------------------------- project


def _check_project_args(args: argparse.Namespace) -> None:
    """Every number of `project` checked before the model loads: one line naming the flag."""
    if args.steps < 1 or args.steps > 100000:
        raise UserError(f"--steps {args.steps}: expected 1 to 100000 optimisation steps")
    if not (math.isfinite(args.lr) and args.lr > 0):
        raise UserError(f"--lr {args.lr}: expected a positive, finite learning rate (default 0.1)")
    for flag, value in (("--mse-weight", args.mse_weight), ("--ssim-weight", args.ssim_weight),
                        ("--l1-weight", args.l1_weight), ("--d-weight", args.d_weight)):
        if not (math.isfinite(value) and value >= 0):
            raise UserError(f"{flag} {value}: expected 0 (off) or a positive, finite weight")
    gen.check_seed(args.seed)
    if args.slice is not None and not str(args.image).lower().endswith((".nii", ".nii.gz")):
        raise UserError(f"--slice {args.slice}: {args.image} is one 2-D image; --slice picks a slice of a NIfTI "
                        "volume (.nii/.nii.gz)")


def cmd_project(args: argparse.Namespace) -> int:
    _check_project_args(args)
    model = open_for(args)
    refuse_volumes(model, "project", "it inverts one 2-D slice; a volume run has no 2-D image space")
    G = model.G
    target = project.load_target(args.image, G.resolution, G.img_channels, slice_index=args.slice, axis=args.axis)
    k = class_of(args, model, default_first=False)
    features = None
    if args.d_weight > 0:
        D = model.discriminator()
        features = lambda img: _d_features_grad(D, img)  # noqa: E731
    result = project.project(G, target, steps=args.steps, w_plus=args.wplus, class_index=k, seed=args.seed,
                             initial_lr=args.lr, pixel_weight=args.mse_weight, l1_weight=args.l1_weight,
                             ssim_weight=args.ssim_weight, feature_weight=args.d_weight, features=features,
                             optimize_noise=not args.model_noise, w_avg_samples=args.w_samples)
    stem = gen.safe_name(Path(args.image).name.split(".")[0]) + (f"_slice{args.slice}" if args.slice is not None else "")
    folder = out_folder(args, model, "project") / f"{stem}_{'wplus' if args.wplus else 'w'}"
    gen.write_png(folder / "target.png", result.target)
    gen.write_png(folder / "projected.png", result.image)
    io.save_image(folder / "side_by_side.png", project.side_by_side(result))
    latent = gen.write_npy(folder / "projected_w.npy", result.ws)
    noise = _np_savez(folder / "projected_noise.npz", result.noise) if result.noise else None
    keys = ["step", "image_loss", "mse", "l1", "ms_ssim", "noise_reg", "lr"] + (["features"] if features else [])
    io.write_csv(folder / "loss.csv", keys, [[h.get(key, "") for key in keys] for h in result.history])
    project.plot_loss_curve(folder / "loss.png", result)
    loss_desc = (f"{args.mse_weight:g} * pixel MSE + {args.l1_weight:g} * L1 + {args.ssim_weight:g} * (1 - MS-SSIM)"
                 + (f" + {args.d_weight:g} * discriminator-feature MSE" if features else "")
                 + (" + 1e5 * noise autocorrelation" if result.noise else ""))
    io.write_json(folder / "summary.json", {
        "image": str(args.image), "checkpoint": str(model.checkpoint), "kimg": model.kimg,
        "space": "W+" if args.wplus else "W",
        "steps": args.steps, "loss": loss_desc, "initial_image_loss": result.initial_loss,
        "final_image_loss": result.final_loss, "final_mse": result.history[-1]["mse"],
        "final_ms_ssim": result.history[-1]["ms_ssim"], "latent_shape": list(result.ws.shape),
        "noise_optimised": bool(result.noise)})
    print(f"model: {describe(model)}")
    print(f"loss: {loss_desc}")
    print(f"image loss {result.initial_loss:.4g} (mean w) -> {result.final_loss:.4g} after {args.steps} steps "
          f"in {'W+' if args.wplus else 'W'}")
    print(f"wrote target.png, projected.png, side_by_side.png, loss.csv, loss.png, summary.json to {folder}")
    print(f"latent: {latent}" + (f"  noise maps: {noise}" if noise else ""))
    return 0


def _d_features_grad(D: torch.nn.Module, img: torch.Tensor) -> torch.Tensor:
    """D's penultimate features with gradients (for the projection loss); label-independent by design."""
    head = embed.discriminator_head(D)
    store: list[torch.Tensor] = []
    hook = head.register_forward_hook(lambda _m, _i, out: store.append(out))
    try:
        D(img, one_hot([0] * len(img) if D.c_dim else [None] * len(img), D.c_dim, device=img.device))
    finally:
        hook.remove()
    return store[-1]


# ------------------------------------------------------------------------------------------------- edit


def cmd_edit(args: argparse.Namespace) -> int:
    steps = edit.parse_steps(args.multiples)
    if not all(math.isfinite(step) for step in steps) or len(steps) > 1000:
        raise UserError(f"--multiples {args.multiples}: expected at most 1000 finite multiples of the direction")
    if args.zoom < 1 or args.zoom > 64:
        raise UserError(f"--zoom {args.zoom}: expected an integer from 1 to 64")
    model = open_for(args)
    G = model.G
    a, b = edit.parse_direction(args.direction, model.class_names, G.c_dim, model.class_index)
    ws = edit.load_latent(args.latent, G.num_ws, G.w_dim)
    layers = mixing.parse_styles(args.layers, G.num_ws, G.resolution) if args.layers else None
    noise_file = Path(args.noise_from) if args.noise_from else Path(args.latent).with_name("projected_noise.npz")
    used_noise = None
    if not args.model_noise and noise_file.is_file():
        try:
            with np.load(noise_file, allow_pickle=False) as z:
                maps = {key: z[key] for key in z.files}
        except (ValueError, OSError):
            raise UserError(f"{noise_file}: not a noise-map .npz written by 'stylemri project'") from None
        G = copy.deepcopy(G)
        project.set_noise_buffers(G, maps)
        used_noise = noise_file
    elif args.noise_from:
        raise UserError(f"--noise-from {args.noise_from}: no such file")
    direction = edit.class_direction(G, a, b, num_samples=args.w_samples)
    images, edited = edit.edit_sequence(G, ws, direction, steps, layers=layers, noise_mode="const")
    from stylemri.volumes_io import views_for

    images = views_for(images, model.config.network.dims)  # 3-D runs: the three mid-slices of each step
    name = f"{gen.safe_name(Path(args.latent).stem)}_{gen.safe_name(args.direction)}"
    folder = out_folder(args, model, "edit") / name
    files = []
    for name, img in zip(_step_names(steps), images):
        files.append(gen.write_png(folder / name, img))
    strip = interpolate.write_strip(folder / "strip.png", images, zoom=args.zoom)
    gif = interpolate.write_gif(folder / "edit.gif", images, zoom=args.zoom)
    gen.write_npy(folder / "edited_ws.npy", edited.numpy())
    io.write_csv(folder / "steps.csv", ["step", "file"], [[s, f.name] for s, f in zip(steps, files)])
    print(f"model: {describe(model)}")
    print(f"direction {model.class_names[a]} - {model.class_names[b]} (difference of class-mean w over "
          f"{args.w_samples} latents each; |d| = {float(direction.norm()):.3g}), "
          f"steps {', '.join(f'{s:g}' for s in steps)}"
          + (f", layers {', '.join(map(str, layers))}" if layers else ""))
    print("noise maps: " + (f"from {used_noise}" if used_noise else "the model's stored constant noise"))
    print(f"wrote {len(files)} images step_*.png, strip.png, edit.gif, edited_ws.npy, steps.csv to {folder}")
    return 0


def _step_names(steps: list[float]) -> list[str]:
    """step_+1.00.png, ...: two decimals, more when two distinct steps would otherwise share a file."""
    for digits in range(2, 11):
        names = [f"step_{s:+.{digits}f}.png" for s in steps]
        if len(set(names)) == len(names):
            return names
    raise UserError("--steps: expected distinct steps (they name the files written)")


# ------------------------------------------------------------------------------------------------ embed


def _write_analysis(folder: Path, prefix: str, res: embed.EmbeddingResult, title: str) -> list[Path]:
    d = res.embedding.shape[1]
    base = f"{prefix}_{res.method}_{d}d"
    out = [gen.write_npy(folder / f"{base}.npy", res.embedding), embed.write_embedding_csv(folder / f"{base}.csv", res),
           embed.plot_embedding(folder / f"{base}.png", res.embedding, res.labels, res.class_names,
                                f"{title}: {d}-D {embed.METHOD_NAMES[res.method]}", res.method)]
    return out


def _analyse_all(codes: np.ndarray, labels: np.ndarray, names: list[str], what: str, args: argparse.Namespace,
                 folder: Path, prefix: str) -> tuple[dict, list[Path]]:
    dims = [2, 3] if args.plot_dims == "both" else [int(args.plot_dims)]
    written = [gen.write_npy(folder / f"{prefix}_codes.npy", codes),
               gen.write_npy(folder / f"{prefix}_labels.npy", labels)]
    summary: dict = {}
    for d in dims:
        res = embed.analyse(codes, labels, names, what, args.method, d, seed=args.seed)
        written += _write_analysis(folder, prefix, res, what)
        summary.update(res.summary())
        if d == dims[0] and len(names) > 1:
            base = ", ".join(f"{n} {v:.3f}" for n, v in zip(names, res.split_half) if np.isfinite(v))
            written.append(embed.plot_cosine(folder / f"{prefix}_cosine.png", res.cosine, names,
                                             f"Class-mean cosine: {what}\n(split-half baseline: {base})"))
    summary.pop("dims", None)
    return summary, written


def cmd_embed(args: argparse.Namespace) -> int:
    if args.num < 2 or args.num > 100000:
        raise UserError(f"--num {args.num}: expected 2 to 100000 samples per class")
    if args.method not in embed.METHODS:
        raise UserError(f"--method {args.method}: expected one of {', '.join(embed.METHODS)}")
    gen.check_seed(args.seed, args.num)  # the last of --num consecutive seeds < 2^32 too
    psi = args.trunc  # checked while parsing (options.psi)
    runs = list(args.run)
    if len(runs) > 2:
        raise UserError(f"RUN: expected one run, or two per-class runs to compare; got {len(runs)}")
    models = [open_for(args, r, args.checkpoint if i == 0 else args.checkpoint_b) for i, r in enumerate(runs)]
    first = models[0]
    labels_of = [m.run_name for m in models]
    if len(set(labels_of)) < len(labels_of):  # two runs of the same name: keep their files and labels apart
        labels_of = [f"{n}-{i + 1}" for i, n in enumerate(labels_of)]
    folder = out_folder(args, first, "embed" if len(models) == 1 else f"embed_vs_{gen.safe_name(labels_of[1])}")
    report: dict = {"checkpoints": [str(m.checkpoint) for m in models]}
    codes, labels, names = _style_codes(models, labels_of, runs, args.num, args.seed, psi)
    report["style_codes"], written = _analyse_all(codes, labels, names, "style codes w", args, folder, "w")
    source = args.data or first.config.data.source
    if args.data or _source_exists(source):
        for m, label in zip(models, labels_of):
            prefix = "dfeat" if len(models) == 1 else f"dfeat_{gen.safe_name(label)}"
            found = _discriminator_embedding(m, args, folder, prefix)
            if found is not None:
                report[prefix], files = found
                written += files
    else:
        report["dfeat"] = f"skipped: data source {source} not found here (pass --data)"
    io.write_json(folder / "summary.json", report)
    print(f"model: {describe(first)}" + (f"\nmodel B: {describe(models[1])}" if len(models) > 1 else ""))
    for key in [k for k in report if k != "checkpoints"]:
        print(_summary_line(key, report[key]))
    print(f"wrote {len(written) + 1} files (embeddings .npy/.csv, plots .png, summary.json) to {folder}")
    return 0


def _style_codes(models: list[TrainedModel], labels_of: list[str], runs: list[str], num: int, seed: int, psi: float
                 ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """`num` style codes per class of each model, their labels and the label names (run:class for two runs)."""
    if len(models) == 1:
        first = models[0]
        codes, labels = embed.sample_style_codes(first.G, num, seed=seed, psi=psi)
        return codes, labels, first.class_names if first.conditional else [first.run_name]
    if models[0].G.w_dim != models[1].G.w_dim:
        raise UserError(f"{runs[1]}: w_dim {models[1].G.w_dim} differs from {runs[0]}'s {models[0].G.w_dim}; "
                        "style codes of the two runs cannot be compared")
    parts, names = [], []
    for m, name in zip(models, labels_of):
        c, lab = embed.sample_style_codes(m.G, num, seed=seed, psi=psi)
        mnames = [f"{name}:{n}" for n in m.class_names] if m.conditional else [name]
        parts.append((c, lab + len(names)))
        names += mnames
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]), names


def _discriminator_embedding(m: TrainedModel, args: argparse.Namespace, folder: Path, prefix: str
                             ) -> tuple[dict, list[Path]] | None:
    """The embedding of the discriminator's features of `--num` real images per class (None: too few)."""
    ds = load_real_data(m, args.data or m.config.data.source, args.split)
    idx = sample_per_class(ds, args.num, args.seed)
    images, labels_r = ds.batch(idx, resolution=m.G.resolution)
    model_labels = _model_labels(ds.class_names, m, labels_r)
    feats = embed.discriminator_features(m.discriminator(), images, model_labels)
    present = sorted(set(np.asarray(labels_r).tolist()))
    remap = {k: j for j, k in enumerate(present)}
    lab = np.array([remap[int(k)] for k in labels_r])
    dnames = [ds.class_names[k] for k in present]
    if len(lab) <= 3:
        return None
    what = f"discriminator features of real images ({m.run_name})"
    return _analyse_all(feats, lab, dnames, what, args, folder, prefix)


def _source_exists(source: str) -> bool:
    return source.startswith("builtin:") or Path(source).exists()


def _model_labels(data_names: list[str], model: TrainedModel, labels: torch.Tensor) -> torch.Tensor:
    """Dataset labels -> the model's class indices (0 where the model lacks the class; D's features do not
    depend on the label, only its final projection does)."""
    lookup = {n: i for i, n in enumerate(model.class_names)}
    return torch.tensor([lookup.get(data_names[int(k)], 0) for k in labels], dtype=torch.long)


def _summary_line(key: str, s) -> str:
    if isinstance(s, str):
        return f"{key}: {s}"
    cos = s["cosine_of_class_means"]
    names = list(cos)
    pairs = [f"{a}~{b} {cos[a][b]:.3f}" for i, a in enumerate(names) for b in names[i + 1:]]
    sil, acc, chance = s.get("silhouette_full_space"), s.get("linear_accuracy_cv"), s.get("chance_accuracy")
    baseline = ", ".join(f"{v:.3f}" for v in s["split_half_cosine"].values() if v is not None)
    sil_text = "n/a" if sil is None else f"{sil:.3f}"
    acc_text = "n/a" if acc is None else f"{acc:.2f} (chance {chance:.2f})"
    return (f"{s['what']}: cosine of class means {', '.join(pairs) or '(one class)'}; split-half baseline "
            f"{baseline}; silhouette {sil_text}; linear accuracy {acc_text}")


# ---------------------------------------------------------------------------------------------- compare


def cmd_compare(args: argparse.Namespace) -> int:
    if args.num < 1 or args.num > 1024:
        raise UserError(f"--num {args.num}: expected 1 to 1024 images")
    gen.check_seed(args.seed, args.num)  # the last of --num consecutive seeds < 2^32 too
    psi = args.trunc  # checked while parsing (options.psi)
    model = open_for(args)
    refuse_volumes(model, "compare", "for the nearest real volume of each generated one: stylemri evaluate RUN "
                                     "--metrics memorization")
    G = model.G
    source = args.data or model.config.data.source
    ds = load_real_data(model, source, args.split)
    if len(ds) == 0:
        raise UserError(f"--data {source}: no images found")
    rng = np.random.RandomState(args.seed)
    idx = np.sort(rng.choice(len(ds), size=min(args.num, len(ds)), replace=False))
    real, real_labels = ds.batch(idx, resolution=G.resolution)
    seeds = list(range(args.seed, args.seed + len(idx)))
    if G.c_dim:  # class-matched: each generated image takes the class of the real one beside it
        lookup = {n: i for i, n in enumerate(model.class_names)}
        ks = [lookup.get(ds.class_names[int(k)], int(s) % G.c_dim) for k, s in zip(real_labels, seeds)]
        samples = [gen.Sample(s, k, model.class_names[k]) for s, k in zip(seeds, ks)]
    else:
        samples = [gen.Sample(s, None, None) for s in seeds]
    fake = model.generate(seeds, class_name=[s.class_index for s in samples] if G.c_dim else None, trunc=psi,
                          noise=args.noise)
    folder = out_folder(args, model, "compare")
    fig = compare.real_vs_generated_figure(folder / "real_vs_generated.png", fake, real,
                                           title=f"Left: generated ({model.run_name}, {model.kimg:g} kimg). "
                                                 f"Right: real ({Path(source).name or source}).")
    nearest = compare.nearest_training_images(fake, ds, seed=args.seed)
    near_imgs, _ = ds.batch(nearest.nearest_index, resolution=G.resolution)
    near_imgs = torch.where(torch.as_tensor(nearest.flipped)[:, None, None, None], near_imgs.flip(-1), near_imgs)
    captions = [f"seed {s.seed}" + (f" {s.class_name}" if s.class_name else "") for s in samples]
    nfig = compare.nearest_figure(folder / "nearest.png", fake, near_imgs, nearest, captions)
    rows = [[s.seed, s.class_name or "", int(i), ds.source_of(int(i)), f"{d:.6f}", bool(f), bool(c)]
            for s, i, d, f, c in zip(samples, nearest.nearest_index, nearest.distance, nearest.flipped, nearest.closer)]
    table = io.write_csv(folder / "nearest.csv", ["seed", "class", "nearest_index", "nearest_source", "rms_distance",
                                                "mirrored", "closer_than_real_pairs"], rows)
    io.save_grid(folder / "generated.png", fake)
    print(f"model: {describe(model)}")
    print(f"real: {len(idx)} of {len(ds)} images from {source}; "
          f"generated: {len(samples)} (seeds {seeds[0]}-{seeds[-1]})")
    print(f"nearest training image, RMS pixel distance ([0, 1] scale): median {np.median(nearest.distance):.4f}, "
          f"min {nearest.distance.min():.4f}; real-to-real median {nearest.threshold:.4f}; "
          f"{int(nearest.closer.sum())} of {len(samples)} generated images closer than that")
    print(f"wrote {fig}\nwrote {nfig}\nwrote {table}")
    return 0


# ---------------------------------------------------------------------------------------------- register


def register(sub: argparse._SubParsersAction) -> None:
    """The analysis commands `project`, `edit`, `embed` and `compare`, with their flags.

    Long because it only adds arguments: one call per flag, no logic."""
    p = sub.add_parser("project", help="invert a real slice into the generator's W (or W+) space",
                       description="Projection by optimisation (StyleGAN2's projector): Adam on w from the mean w, "
                                   "with ramped w noise and the per-layer noise maps optimised under an "
                                   "autocorrelation penalty. Loss: pixel MSE + (1 - MS-SSIM) (+ L1, + discriminator "
                                   "features if asked): no perceptual network is downloaded. IMAGE: PNG/JPEG/TIFF "
                                   "(8/16-bit), a .npy slice, or a NIfTI volume (--slice, --axis).")
    add_model_args(p)
    p.add_argument("image", metavar="IMAGE", help="the real slice to invert")
    p.add_argument("--steps", type=int, default=500, metavar="S", help="optimisation steps (default: 500)")
    p.add_argument("--wplus", action="store_true", help="one w per layer (W+): closer fits, less editable")
    p.add_argument("--slice", type=int, default=None, metavar="K", help="NIfTI: slice index (default: the middle)")
    add_flag(p, "--axis", default="axial")
    add_class(p, "conditional model: start from this class's mean w (default: the mean over classes)")
    p.add_argument("--lr", type=float, default=0.1, help="peak Adam learning rate (default: 0.1)")
    p.add_argument("--mse-weight", type=float, default=1.0, help="weight of pixel MSE (default: 1)")
    p.add_argument("--ssim-weight", type=float, default=1.0, help="weight of 1 - MS-SSIM (default: 1)")
    p.add_argument("--l1-weight", type=float, default=0.0, help="weight of pixel L1 (default: 0)")
    p.add_argument("--d-weight", type=float, default=0.0,
                   help="weight of the discriminator-feature distance (default: 0 = off)")
    _add_model_noise(p, "keep the model's stored noise maps instead of optimising them")
    add_alias(p, "--fixed-noise", "model_noise", new="--model-noise", const=True, nargs=0)
    add_flag(p, "--w-samples", default=5000, help="latents per class for the mean w (default: 5000)")
    add_seed(p, "seed of the optimisation noise (default: 0)")
    p.set_defaults(func=cmd_project)

    p = sub.add_parser("edit", help="move a (projected) latent along a class direction",
                       description="Moves a latent (e.g. projected_w.npy from 'stylemri project') along "
                                   "mean_w(TO) - mean_w(FROM) of a conditional model and writes the sequence. Step 1 "
                                   "adds one whole class-mean difference. The projection's noise maps "
                                   "(projected_noise.npz beside the latent) are used when present.")
    add_model_args(p)
    p.add_argument("--latent", required=True, metavar="FILE.npy", help="latent: (num_ws, w_dim) or (w_dim,)")
    p.add_argument("--direction", required=True, metavar="TO-FROM", help="e.g. AD-NC: towards AD, away from NC")
    p.add_argument("--multiples", default="-3..3", metavar="LO..HI[:STEP]",
                   help="multiples of the direction: -3..3, -1..1:0.25 or a list -2,0,2 (default: -3..3)")
    add_alias(p, "--steps", "multiples", new="--multiples")
    add_flag(p, "--layers", default=None, help="move only these layers (default: all)")
    p.add_argument("--noise-from", default=None, metavar="FILE.npz",
                   help="noise maps to use (default: projected_noise.npz beside --latent, when present)")
    _add_model_noise(p, "use the model's stored noise maps even if a projection's exist")
    add_flag(p, "--w-samples", default=2000, help="latents per class mean (default: 2000)")
    p.add_argument("--zoom", type=int, default=1, metavar="K", help="enlarge strip and GIF K times (default: 1)")
    p.set_defaults(func=cmd_edit)
    # let `--steps -3..3` (a value starting with '-') parse as a value: argparse's own negative-number test
    # only knows plain numbers; this parser has no option that looks like a number, so nothing is shadowed
    p._negative_number_matcher = re.compile(r"^-(\d|\.\d)[\d.:,+-]*$")

    p = sub.add_parser("embed", help="style-space analysis: t-SNE/PCA/UMAP, class cosine, silhouette",
                       description="Embeds style codes w (N per class) with t-SNE, PCA or UMAP, coloured by class, "
                                   "2-D and 3-D; cosine similarity of class-mean w with a split-half baseline; "
                                   "silhouette scores. The same for the discriminator's features of real images per "
                                   "class (from --data, or the run's training data when present). With two runs "
                                   "(RUN_AD RUN_NC) it compares their style codes.")
    add_model_args(p, runs="+", outdir_help="output folder (default: RUN/outputs); files go to DIR/kimg-<K>/embed*/")
    add_flag(p, "--data", dest="data", default=None, help="real images for the discriminator-feature analysis")
    add_flag(p, "--split", default=None, help="split of --data (default: the run's)")
    add_num(p, 500, "samples per class (default: 500)")
    p.add_argument("--method", default="tsne", metavar="tsne|umap|pca", help="embedding method (default: tsne)")
    p.add_argument("--plot-dims", choices=("2", "3", "both"), default="both",
                   help="dimensions of the embedding plots (default: both)")
    add_alias(p, "--dims", "plot_dims", new="--plot-dims")
    add_trunc(p, "truncation of the style codes (default: 1)")
    add_seed(p, "seed of latents, subsampling and t-SNE (default: 0)")
    p.set_defaults(func=cmd_embed)

    p = sub.add_parser("compare", help="real vs generated side by side; nearest training image per generated one",
                       description="The 'left side is fake' figure (generated left, real right, class-matched for "
                                   "conditional models) and, for each generated image, its nearest training image "
                                   "by pixel distance (mirror images included): a memorisation check.")
    add_model_args(p)
    add_flag(p, "--data", dest="data", default=None, help="real images (default: the run's training data)")
    add_flag(p, "--split", default=None, help="split of --data (default: the run's)")
    add_num(p, 16, "images on each side (default: 16)")
    add_seed(p, "first seed and real-image sampling seed (default: 0)")
    add_sampling_args(p)
    p.set_defaults(func=cmd_compare)


def _add_model_noise(p: argparse.ArgumentParser, help: str) -> None:
    """--model-noise: the model's stored noise maps (project: instead of optimised ones; edit: instead of the
    projection's)."""
    p.add_argument("--model-noise", action="store_true", help=help)


__all__ = ["register"]
