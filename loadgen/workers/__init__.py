"""Scale-out: a level's load from many worker processes on Ray. Only `pool` and `actor` import Ray,
which is an optional extra."""

import socket

from loadgen.config import LoadShape
from loadgen.errors import ServerError, UsageError
from loadgen.redact import redact_url
from loadgen.transport.base import split_host_port

RAY_CONNECT_S = 5.0


def preflight(load: LoadShape) -> None:
    """Fail before the server starts: --workers without Ray installed, or a cluster address where
    nothing listens (Ray itself would retry it for minutes)."""
    try:
        import ray  # noqa: F401
    except ImportError:
        raise UsageError("--workers runs the load on Ray, which is not installed: pip install 'loadgen[ray]'") from None
    if load.ray_address in (None, "auto"):
        return
    host, port = split_host_port(load.ray_address, 10001)  # the config has checked it has a port
    try:
        socket.create_connection((host, port), timeout=RAY_CONNECT_S).close()
    except OSError as exc:
        raise ServerError(
            f"cannot reach a Ray cluster at {redact_url(load.ray_address)} ({exc.strerror or exc}): "
            "start one (ray start --head) or fix --ray-address"
        ) from None
