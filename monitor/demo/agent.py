"""A simulated auth + WebSocket "agent" service: the golden path of the demo.

`monitor demo` serves it for its journey probe, and the journey tests run
against it. Routes:

    POST /auth/login   {"user", "password"} -> 200 {"token": ...} or 401
    GET  /health       200 {"status": "ok"}
    GET  /ws           WebSocket; needs `Authorization: Bearer <token>` from
                       /auth/login. Sends {"type": "connection_ready"} first,
                       then answers each {"type": "user_message", "text"} after
                       `reply_delay` with {"type": "agent_response", "text"}.
    POST /fault/<mode> sets the fault mode (the demo's switch); GET /fault shows it.

Fault modes (one at a time, flipped with :meth:`AgentFaults.set` or
`POST /fault/<mode>`), each what a user of the real service would see when
it breaks:

    ok             as above
    reject_tokens  /ws answers 401 to every token (the auth service lost its keys)
    upgrade503     /ws answers 503 instead of upgrading (no instance ready)
    upgrade429     /ws answers 429 instead of upgrading (at max instances)
    close1011      the agent closes the WebSocket with 1011 instead of answering
                   (the backend crashed mid-conversation)
    silent         the agent reads the message and never answers
    wrong_type     the agent answers only with {"type": "agent_thinking"}
                   messages, never with an agent_response
"""

from __future__ import annotations

import asyncio
import hmac
import json
import secrets
import weakref
from collections import OrderedDict
from dataclasses import dataclass, field

from aiohttp import WSMsgType, web

MODES = ("ok", "reject_tokens", "upgrade503", "upgrade429", "close1011", "silent", "wrong_type")
DEMO_USER = "probe"
DEMO_PASSWORD = "demo-password"  # noqa: S105 - the demo's own throwaway credential
# Tokens remembered; the oldest are forgotten first (a probe logs in every run).
MAX_TOKENS = 1000
# What `wrong_type` sends per user message: more than any sane skip cap.
WRONG_TYPE_MESSAGES = 50
# Incoming messages are small chat lines.
MAX_MESSAGE_BYTES = 64 * 1024


@dataclass
class AgentFaults:
    """The agent's fault mode and reply delay, shared with whoever flips them."""

    mode: str = "ok"
    reply_delay: float = 0.05

    def set(self, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown agent fault mode {mode!r} (one of {', '.join(MODES)})")
        self.mode = mode


@dataclass
class AgentState:
    """What the agent knows and counts (tests read the counters)."""

    faults: AgentFaults
    user: str
    password: str
    tokens: OrderedDict[str, None] = field(default_factory=OrderedDict)
    logins: int = 0
    upgrades: int = 0
    messages: int = 0
    connected: int = 0  # WebSockets open right now
    sockets: weakref.WeakSet[web.WebSocketResponse] = field(default_factory=weakref.WeakSet)

    def issue_token(self) -> str:
        token = secrets.token_urlsafe(24)
        self.tokens[token] = None
        while len(self.tokens) > MAX_TOKENS:
            self.tokens.popitem(last=False)
        return token


AGENT = web.AppKey("agent", AgentState)


def agent_app(faults: AgentFaults | None = None, *, user: str = DEMO_USER,
              password: str = DEMO_PASSWORD) -> web.Application:
    """The agent service; ``app[AGENT]`` is its state."""
    app = web.Application()
    app[AGENT] = AgentState(faults=faults or AgentFaults(), user=user, password=password)
    app.router.add_post("/auth/login", _login)
    app.router.add_get("/health", _health)
    app.router.add_get("/ws", _ws)
    app.router.add_post("/fault/{mode}", _set_fault)
    app.router.add_get("/fault", _get_fault)
    app.on_shutdown.append(_close_sockets)
    return app


async def _health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def _login(request: web.Request) -> web.Response:
    state = request.app[AGENT]
    state.logins += 1
    try:
        data = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return web.json_response({"error": "expected a JSON body"}, status=400)
    if not isinstance(data, dict):
        return web.json_response({"error": "expected a JSON object"}, status=400)
    user_ok = hmac.compare_digest(str(data.get("user", "")), state.user)
    password_ok = hmac.compare_digest(str(data.get("password", "")), state.password)
    if not (user_ok and password_ok):
        return web.json_response({"error": "invalid credentials"}, status=401)
    return web.json_response({"token": state.issue_token(), "token_type": "Bearer"})


async def _ws(request: web.Request) -> web.StreamResponse:
    state = request.app[AGENT]
    state.upgrades += 1
    mode = state.faults.mode
    if mode == "upgrade503":
        return web.json_response({"error": "no instance available"}, status=503)
    if mode == "upgrade429":
        return web.json_response({"error": "rate exceeded"}, status=429)
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if mode == "reject_tokens" or scheme.lower() != "bearer" or token not in state.tokens:
        return web.json_response({"error": "invalid token"}, status=401)

    ws = web.WebSocketResponse(max_msg_size=MAX_MESSAGE_BYTES)
    await ws.prepare(request)
    state.sockets.add(ws)
    state.connected += 1
    try:
        await _converse(ws, state)
    except ConnectionResetError:
        pass  # the client left mid-answer: its business, not the agent's
    finally:
        state.connected -= 1
    return ws


async def _converse(ws: web.WebSocketResponse, state: AgentState) -> None:
    await ws.send_json({"type": "connection_ready"})
    async for msg in ws:
        if msg.type != WSMsgType.TEXT:
            continue
        try:
            data = json.loads(msg.data)
        except json.JSONDecodeError:
            await ws.send_json({"type": "error", "error": "expected JSON"})
            continue
        if not isinstance(data, dict) or data.get("type") != "user_message":
            await ws.send_json({"type": "error", "error": "expected a user_message"})
            continue
        state.messages += 1
        # The agent "thinks" before it answers, as the real one does.
        await asyncio.sleep(state.faults.reply_delay)
        mode = state.faults.mode
        if mode == "close1011":
            await ws.close(code=1011, message=b"agent failed")
            break
        if mode == "silent":
            continue
        if mode == "wrong_type":
            for seq in range(WRONG_TYPE_MESSAGES):
                await ws.send_json({"type": "agent_thinking", "seq": seq})
            continue
        text = str(data.get("text", ""))[:200]
        await ws.send_json({"type": "agent_response", "text": f"pong: {text}"})


async def _set_fault(request: web.Request) -> web.Response:
    faults = request.app[AGENT].faults
    try:
        faults.set(request.match_info["mode"])
    except ValueError as error:
        return web.json_response({"error": str(error)}, status=400)
    return web.json_response({"mode": faults.mode})


async def _get_fault(request: web.Request) -> web.Response:
    return web.json_response({"mode": request.app[AGENT].faults.mode, "modes": list(MODES)})


async def _close_sockets(app: web.Application) -> None:
    for ws in list(app[AGENT].sockets):
        await ws.close(code=1001, message=b"server shutdown")
