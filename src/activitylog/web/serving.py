"""uvicorn as ``activitylog serve`` runs it: one process, or several sharing one listening socket.

A reply leaves uvicorn in two writes (its head, then its body). asyncio turns Nagle's algorithm off only on
sockets made with ``IPPROTO_TCP``, and uvicorn binds the socket it shares between processes with protocol
0, so on that socket every reply on a kept-alive connection waited for the client's delayed ACK: about
40 ms a request. The listening socket gets ``TCP_NODELAY`` here, and Linux copies it to every connection
it accepts.
"""

from __future__ import annotations

import socket
import sys

import uvicorn
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors import Multiprocess


def listening_socket(config: uvicorn.Config) -> socket.socket:
    """The socket the processes share, sending each write at once."""
    sock = config.bind_socket()
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def run(config: uvicorn.Config) -> None:
    """What ``uvicorn.run`` does for these two cases, with the shared socket from ``listening_socket``."""
    if config.workers > 1:
        Multiprocess(config, sockets=[listening_socket(config)]).run()
        return
    server = uvicorn.Server(config)
    server.run()
    if not server.started:
        sys.exit(STARTUP_FAILURE)
