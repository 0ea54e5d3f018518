"""``charpoet serve``: the web app (write, chat, watch training) for a directory of runs or one run."""

from __future__ import annotations

import errno
import ipaddress
import socket
import sys
import warnings
from pathlib import Path
from typing import Annotated

import typer

from charpoet.cli import app
from charpoet.errors import CharpoetWarning, ConfigError

LIMITS = "Limits (per request or per client)"


@app.command()
def serve(
    runs: Annotated[Path | None, typer.Option(help="Serve every run below this directory [default: runs].", show_default=False)] = None,
    checkpoint_path: Annotated[Path | None, typer.Option(help="Serve this one run instead.", show_default=False)] = None,
    host: Annotated[str, typer.Option(help="Address to listen on; anything but a loopback address makes the page reachable from the network.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on (0: any free port).")] = 8000,
    weights: Annotated[str, typer.Option(help="best (lowest validation loss) or last.")] = "best",
    min_quote: Annotated[int, typer.Option(help="Shortest verbatim copy to highlight, in characters.")] = 20,
    max_prompt_chars: Annotated[int, typer.Option(help="Longest prompt or chat turn, in characters.", rich_help_panel=LIMITS)] = 10_000,
    max_length: Annotated[int, typer.Option(help="Most tokens per sample or answer.", rich_help_panel=LIMITS)] = 5_000,
    max_samples: Annotated[int, typer.Option(help="Most samples per generation.", rich_help_panel=LIMITS)] = 8,
    max_streams_per_client: Annotated[int, typer.Option(help="Concurrent generations and answers per client address.", rich_help_panel=LIMITS)] = 4,
    max_conversations: Annotated[int, typer.Option(help="Conversations kept in memory (least recently used dropped first).", rich_help_panel=LIMITS)] = 256,
    workers: Annotated[int, typer.Option(help="Threads that compute tokens for all streams (0: one per core).", rich_help_panel=LIMITS)] = 0,
) -> None:
    """Serve the web app: write with a run, see its copies highlighted, chat, and watch training."""
    if runs is not None and checkpoint_path is not None:
        raise ConfigError("give --runs or --checkpoint-path, not both")
    if weights not in ("best", "last"):
        raise ConfigError(f"--weights must be best or last, got {weights!r}")
    if not 0 <= port <= 65535:
        raise ConfigError(f"--port must be in 0..65535, got {port}")
    from charpoet.web.service import Limits, Service

    limits = Limits(max_prompt_chars=max_prompt_chars, max_length=max_length, max_samples=max_samples,
                    max_streams_per_client=max_streams_per_client, max_conversations=max_conversations,
                    workers=workers)
    service = Service(root=None if checkpoint_path else (runs or Path("runs")), run=checkpoint_path,
                      limits=limits, weights=weights, min_quote=min_quote)
    sock = _bind(host, port)
    bound_port = sock.getsockname()[1]
    if not _is_loopback(host):
        warnings.warn(f"--host {host}: the page is reachable from the network on port {bound_port}, "
                      "and anyone who reaches it can use these runs", CharpoetWarning, stacklevel=2)
    import uvicorn

    from charpoet.web.app import create_app

    from charpoet.stepper import warm_up

    shown = f"[{host}]" if ":" in host else host
    what = f"run {service.runs.root}" if service.runs.single else f"runs in {service.runs.root}"
    warm_up()  # the generation kernels, compiled or loaded from the cache before the first request
    # on a loopback address only requests for it are answered (no DNS rebinding); IPv6 hosts: any
    hosts = ["localhost", "127.0.0.1"] if _is_loopback(host) and ":" not in host else None
    config = uvicorn.Config(create_app(service, allowed_hosts=hosts), log_level="warning", timeout_graceful_shutdown=3,
                            lifespan="off")
    import gc

    gc.freeze()  # what start-up made (torch, numpy, the model) is never scanned again: no long collections later
    try:
        print(f"charpoet serve: http://{shown}:{bound_port}/ ({what}); Ctrl-C stops", file=sys.stderr, flush=True)
        uvicorn.Server(config).run(sockets=[sock])
    except KeyboardInterrupt:
        pass  # uvicorn shuts down on Ctrl-C, then raises it again
    finally:
        service.close()
        sock.close()
    print("charpoet serve: stopped", file=sys.stderr)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _bind(host: str, port: int) -> socket.socket:
    """A listening socket, or a one-line ``ConfigError`` (port busy, address not here)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ConfigError(f"--host {host}: {exc.strerror or exc}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError(f"port {port} on {host} is in use; stop what uses it or give another --port") from None
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.set_inheritable(True)
    return sock
