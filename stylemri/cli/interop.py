"""`stylemri import FILE.pkl` and `stylemri export RUN --format ...`: models in from NVlabs, out to other tools.

See docs/interop.md. Both print only what they wrote; bad input is one line and exit code 2 (UserError).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from stylemri.cli.options import add_flag, add_outdir


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("import", help="an NVlabs StyleGAN2 .pkl as a stylemri run (no code from it runs)",
                       description="Read an NVlabs stylegan2-ada-pytorch / stylegan3 (--cfg stylegan2) network "
                                   "pickle without running code from it, convert RGB to one luma channel and "
                                   "write a run folder (config.json + verified checkpoint) every command opens.")
    p.add_argument("pickle", metavar="FILE.pkl", help="NVlabs network snapshot (network-snapshot-*.pkl)")
    add_outdir(p, "folder for the new run (default: runs)", default="runs")
    p.add_argument("--name", default=None, metavar="NAME", help="run name (default: import-<file stem>)")
    p.set_defaults(func=cmd_import)

    from stylemri.interop.export import FORMATS

    e = sub.add_parser("export", help="the generator as ONNX, TorchScript or NVlabs-named safetensors",
                       description="Export a run's EMA generator: img = G(z[, c], trunc) with fixed noise "
                                   "(onnx, torchscript; checked against stylemri.load(RUN).generate on 8 seeds), "
                                   "or its weights under NVlabs' parameter names (safetensors).")
    e.add_argument("run", metavar="RUN", help="training run folder (or one checkpoint's .json/.safetensors)")
    e.add_argument("--format", required=True, choices=FORMATS, help="onnx (needs the export extra), "
                   "torchscript or safetensors")
    add_flag(e, "--checkpoint", default="latest")
    add_outdir(e, "output folder (default: RUN/exports); files go to DIR/kimg-<K>/")
    e.set_defaults(func=cmd_export)


def cmd_import(args: argparse.Namespace) -> int:
    from stylemri.interop.importer import import_pickle

    result = import_pickle(args.pickle, args.outdir, args.name)
    shape = result.source_shape
    net = result.config.network
    print(f"read {args.pickle} (SHA-256 {result.sha256[:16]}...): StyleGAN2 {net.resolution} px, "
          f"{shape['img_channels']} channel(s) -> {net.img_channels}, c_dim {net.c_dim}, "
          f"channel_base {net.channel_base}, map_layers {net.map_layers}; no code from the file ran")
    d = "G, G_ema and D" if result.with_discriminator else f"G and G_ema (D left out: {result.note})"
    print(f"wrote {d} to {result.run_dir} (checkpoint {result.checkpoint.name})")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    import stylemri
    from stylemri.interop.export import export, require_extra

    require_extra(args.format)  # before loading anything: the one-line answer comes first
    model = stylemri.load(args.run, checkpoint=args.checkpoint, device="cpu")
    root = Path(args.outdir) if args.outdir is not None else model.layout.exports
    result = export(model, args.format, root / model.tag)
    print(f"model: {model.checkpoint} ({model.kimg:g} kimg, {model.resolution} px)")
    if result.format == "safetensors":
        print(f"wrote G_ema under NVlabs' parameter names (init kwargs in the file's metadata) to {result.path}")
    else:
        check = (f"max abs diff vs generate on 8 seeds {result.max_abs_diff:.2e}" if result.max_abs_diff is not None
                 else "not run here: onnxruntime is not installed")
        print(f"wrote {result.format} generator, inputs {', '.join(result.inputs)} -> img, noise const "
              f"({check}) to {result.path}")
    return 0

