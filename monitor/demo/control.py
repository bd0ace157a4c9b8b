"""The demo's fault switch: one small HTTP app for every simulated service.

    POST /fault/<target>/<mode>   flip a fault (e.g. /fault/backend-b/503)
    GET  /fault                   every target with its modes and current mode
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web


@dataclass
class Switch:
    modes: tuple[str, ...]
    apply: Callable[[str], None]
    current: str = "ok"


def control_app(switches: dict[str, Switch]) -> web.Application:
    async def set_fault(request: web.Request) -> web.Response:
        target, mode = request.match_info["target"], request.match_info["mode"]
        switch = switches.get(target)
        if switch is None:
            return web.json_response(
                {"error": f"unknown target {target!r} (one of {', '.join(switches)})"},
                status=404)
        if mode not in switch.modes:
            return web.json_response(
                {"error": f"unknown mode {mode!r} for {target} "
                          f"(one of {', '.join(switch.modes)})"}, status=400)
        switch.apply(mode)
        switch.current = mode
        return web.json_response({"target": target, "mode": mode})

    async def list_faults(request: web.Request) -> web.Response:
        return web.json_response({
            name: {"modes": list(s.modes), "current": s.current} for name, s in switches.items()
        })

    app = web.Application()
    app.router.add_post("/fault/{target}/{mode}", set_fault)
    app.router.add_get("/fault", list_faults)
    return app
