"""A fault-injecting TCP proxy in front of a plain echo server, on 127.0.0.1.

The fault logic lives in ``monitor.demo.echo`` (``monitor demo`` uses it too);
this module only wires the two servers together for tests.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from monitor.demo.echo import EchoServer, FaultProxy, Faults

__all__ = ["EchoServer", "FaultProxy", "Faults", "client_sockets", "echo_behind_proxy",
           "wait_for"]


@asynccontextmanager
async def echo_behind_proxy(faults: Faults | None = None) -> AsyncIterator[FaultProxy]:
    """An echo server and a FaultProxy in front of it; yields the proxy."""
    echo = EchoServer()
    port = await echo.start()
    proxy = FaultProxy(("127.0.0.1", port), faults)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.close()
        await echo.close()


async def wait_for(condition: Callable[[], bool], seconds: float = 5.0) -> bool:
    """Poll ``condition`` until it holds or ``seconds`` pass (bounded); return it."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not condition() and loop.time() < deadline:
        await asyncio.sleep(0.01)
    return condition()


def client_sockets(port: int) -> int:
    """TCP sockets this process holds open towards 127.0.0.1:``port`` (Linux /proc).

    Counts what the client side (the probe) still holds, whatever the
    server has noticed yet: a closed socket's inode leaves /proc/self/fd.
    """
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue  # closed while we listed
        if target.startswith("socket:["):
            inodes.add(target[len("socket:["):-1])
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as lines:
            next(lines)
            for line in lines:
                fields = line.split()
                remote_port = int(fields[2].rsplit(":", 1)[1], 16)
                if remote_port == port and fields[9] in inodes:
                    count += 1
    return count
