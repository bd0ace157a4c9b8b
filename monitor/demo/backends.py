"""Simulated HTTP services: a backend that says who answered, with a fault switch.

Each backend sets `x-app-revision` (the application's own header, so a probe
can tell its answers from the platform's) and `x-served-by` (which instance
answered, for the lb probe). The fault modes mimic what users of Cloud Run
behind a load balancer see:

    ok           200 {"status": "ok"}
    503          the application answers 503 (x-app-revision present)
    platform503  503 without x-app-revision: the platform answered
    429          Cloud Run at max instances
    slow         answers after `slow_seconds`
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from aiohttp import web

MODES = ("ok", "503", "platform503", "429", "slow")


@dataclass
class Faults:
    """The fault mode of each named backend; flipped through the control app."""

    modes: dict[str, str] = field(default_factory=dict)
    slow_seconds: float = 3.0

    def mode(self, backend: str) -> str:
        return self.modes.get(backend, "ok")

    def set(self, backend: str, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown fault mode {mode!r} (one of {', '.join(MODES)})")
        self.modes[backend] = mode


def backend_app(name: str, faults: Faults, revision: str = "demo-00001") -> web.Application:
    """One backend instance called ``name``."""

    async def health(request: web.Request) -> web.Response:
        mode = faults.mode(name)
        app_headers = {"x-app-revision": revision, "x-served-by": name}
        if mode == "slow":
            await asyncio.sleep(faults.slow_seconds)  # the fault being simulated
        if mode == "503":
            return web.json_response({"status": "unavailable"}, status=503, headers=app_headers)
        if mode == "platform503":
            return web.Response(status=503, text="Service Unavailable",
                                headers={"x-served-by": name})
        if mode == "429":
            return web.Response(status=429, text="Rate exceeded.",
                                headers={"x-served-by": name})
        return web.json_response({"status": "ok", "backend": name}, headers=app_headers)

    app = web.Application()
    app.router.add_get("/health", health)
    app.router.add_get("/", health)
    return app

