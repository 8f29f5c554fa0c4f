"""`stylemri explore RUN`: a local web page to explore a trained model (docs/explore.md)."""

from __future__ import annotations

import argparse
import math
import signal
import sys

from stylemri.cli.options import add_device, add_flag, add_run


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("explore", help="explore a trained model in the browser (a local web server)",
                       description="Serve a page (and a JSON/PNG API) to explore a trained model: generated slices "
                                   "by seed and class (one slider per covariate of a --condition model), "
                                   "truncation, class directions with difference maps, interpolation, style "
                                   "mixing, projection and editing of an uploaded scan, and, with --data, each "
                                   "image's nearest training image. Everything the page loads comes from this "
                                   "server. Ctrl-C stops it.")
    add_run(p)
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default: %(default)s, this machine only; any other address "
                        "lets other machines use the model, without authentication)")
    p.add_argument("--port", type=int, default=8765, help="TCP port (default: %(default)s; 0 = any free port)")
    add_flag(p, "--data", dest="data", default=None,
             help="the training images (folder, NIfTI, builtin:mni152), prepared as the run's data was: "
                        "shows each image's nearest training image, its distance and patient ID")
    add_flag(p, "--cache-dir", default=None, help="prepared-data cache folder for --data")
    add_flag(p, "--checkpoint", default="latest")
    add_device(p)
    p.add_argument("--max-upload-mb", type=float, default=64.0, metavar="MB",
                   help="largest upload accepted for projection, in MiB (default: %(default)g)")
    p.set_defaults(func=cmd_explore)


def cmd_explore(args: argparse.Namespace) -> int:
    from stylemri.errors import UserError

    if not math.isfinite(args.max_upload_mb) or args.max_upload_mb <= 0:
        raise UserError(f"--max-upload-mb {args.max_upload_mb}: expected a positive size in MiB")
    try:
        from stylemri.explore import ModelService, bind, create_app, is_loopback, load_training, serve
        from stylemri.explore.server import url_of
    except ImportError as exc:
        raise UserError(f"stylemri explore needs the 'explore' extra ({exc.name} is missing): "
                        f"pip install 'stylemri[explore]'") from None
    sock = bind(args.host, args.port)  # first: a busy port fails before the model loads
    try:
        service = ModelService.open(args.run, args.checkpoint, args.device)
        if service.model.config.network.dims == 3:  # refused here, not at the page's first image request
            raise UserError(f"{args.run}: a 3-D run (--dims 3); stylemri explore works on 2-D slice runs only "
                            f"(for volumes: stylemri generate RUN writes NIfTI volumes and mid-slice PNGs)")
        neighbours = None
        if args.data is not None:
            neighbours = load_training(args.data, service.model.config, service.resolution, args.cache_dir)
        app = create_app(service, neighbours, max_upload_bytes=int(args.max_upload_mb * 2**20))
    except BaseException:
        sock.close()
        raise
    info = service.info()
    classes = ", ".join(info["classes"]) if info["classes"] else "unconditional"
    if info["covariates"] is not None:
        classes += f"; covariates {', '.join(c['name'] for c in info['covariates']['columns'])}"
    print(f"model: {info['checkpoint']} ({info['kimg']:g} kimg, {info['resolution']} px, {classes}) "
          f"on {service.model.device}")
    if neighbours is not None:
        d = neighbours.info()
        print(f"data: {d['images']} training images from {d['source']}; real-to-real nearest distance median "
              f"{d['real_nn_median']:.4f}")
    if not is_loopback(args.host):
        print(f"stylemri: warning: --host {args.host}: the explorer is reachable from other machines, "
              f"without authentication", file=sys.stderr)
    try:
        serve(app, sock, ready=lambda: print(f"serving on {url_of(sock)}  (Ctrl-C stops)", flush=True))
    except KeyboardInterrupt:
        pass
    finally:  # stopped: a Ctrl-C that uvicorn re-raises late must not turn a clean stop into exit 130
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    print("stopped", flush=True)
    return 0
