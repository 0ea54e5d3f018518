"""A live ``charpoet serve`` for tests: uvicorn on a free loopback port, in a background thread.

    with live_server(runs_dir) as url:      # "http://127.0.0.1:PORT"
        ...

The socket listens before the thread starts, so the first request never races the start-up: it
waits in the backlog until the server takes it.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def live_server(root: Path, **service_options: Any) -> Iterator[str]:
    """Serve every run below ``root``; ``service_options`` go to ``Service`` (limits, min_quote)."""
    import uvicorn

    from charpoet.web.app import create_app
    from charpoet.web.service import Service

    service = Service(root=root, **service_options)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    port = sock.getsockname()[1]
    config = uvicorn.Config(create_app(service), log_level="warning", lifespan="off", timeout_graceful_shutdown=3)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="live-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        service.close()
        sock.close()
