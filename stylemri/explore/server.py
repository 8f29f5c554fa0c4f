"""Serving the app: bind the socket first (so a busy port is a one-line error, not a uvicorn log), then
run uvicorn on it until Ctrl-C, which uvicorn turns into a graceful shutdown."""

from __future__ import annotations

import ipaddress
import signal
import socket
from typing import Any, Callable

from stylemri.errors import UserError


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and 'localhost': only this machine can connect."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port (port 0: any free port)."""
    if not 0 <= port <= 65535:
        raise UserError(f"--port {port}: expected a TCP port from 1 to 65535 (0 = any free port)")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise UserError(f"--host {host}: not an address of this machine ({exc.strerror})") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise UserError(f"--host {host} --port {port}: cannot listen there ({exc.strerror}); "
                        f"is another server using it? try another --port") from None
    sock.set_inheritable(True)
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/"


def serve(app: Any, sock: socket.socket, log_level: str = "warning", ready: Callable[[], None] | None = None) -> None:
    """Run `app` on the bound socket until interrupted (Ctrl-C / SIGTERM stop it gracefully). `ready` runs
    (e.g. prints the URL) once a Ctrl-C already stops the server: one that lands before uvicorn installs its
    own handlers asks it to exit at start-up instead of being lost in the event loop's start."""
    import uvicorn

    config = uvicorn.Config(app, log_level=log_level, access_log=False, lifespan="off", timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)
    previous = signal.signal(signal.SIGINT, lambda signum, frame: setattr(server, "should_exit", True))
    try:
        if ready is not None:
            ready()
        server.run(sockets=[sock])
    finally:
        signal.signal(signal.SIGINT, previous)
        sock.close()


__all__ = ["bind", "is_loopback", "serve", "url_of"]
