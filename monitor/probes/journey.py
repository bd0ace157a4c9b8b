"""`kind: journey`: walk a user's path (HTTP login, WebSocket, send, answer).

One run runs the configured steps in order; the first failing step ends
the run, and the WebSocket is always closed. ``http`` steps go through the
house client (:mod:`monitor.net.fetch` on :mod:`monitor.net`: a
fresh connection per request, nothing retried, the same resolver, TLS
contexts and reasons as ``kind: http``); WebSocket steps through aiohttp
(a session with no connection reuse), a ``ws_connect`` with ``proxy_url``
on a CONNECT tunnel of :mod:`monitor.net.proxy` (for ws:// too), so a
proxy's failure reads as on http steps. It measures whether each step
succeeded and how long it took (``monitor_journey_step_success`` /
``_duration_seconds{step}``), exports the http steps' phases summed over
the run as ``monitor_http_phase_duration_seconds{phase}`` (dns, connect,
tls, ttfb, transfer, as ``kind: http`` does), and counts every HTTP
response (logins, redirects, WebSocket upgrades) in
``monitor_http_responses_total{code, origin}``.

Failure reasons, always with the failing step named in the detail:

    dns               a host does not resolve (or the resolver did not answer)
    connect_refused   TCP connect refused or the address unreachable
    connect_timeout   TCP connect (with TLS, for https/wss) not done in time
    tls               the TLS handshake failed
    connection_reset  a reset or EOF before a complete answer; the WebSocket
                      connection lost without a close frame
    timeout           no (matching) answer within the step's timeout or what
                      was left of the journey's
    http_status       an http step got a status it does not expect, a
                      WebSocket upgrade was answered with a status other than
                      101, 401, 403 or 429, or redirects ran out
    auth              a WebSocket upgrade was answered 401 or 403; a step's
                      proxy (``proxy_url``, http and ws_connect) answered
                      407, 401 or 403
    capacity          an http step or an upgrade was answered 429
    assertion         a check of ``expect`` failed (``http_version``: another
                      protocol was negotiated), an ``extract``
                      found nothing, a body or message exceeds its cap, more
                      non-matching messages than ``max_skipped`` arrived
    protocol          the server closed the WebSocket (its close code is in
                      the detail), an invalid handshake or frame, a response
                      that is not HTTP

Values a step extracts (tokens) are secrets: they are masked in the detail
and the trace, and never stored in facts. Steps that did not run (after a
failure) report ``monitor_journey_step_success 0`` and no duration.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import ssl
import time
from dataclasses import dataclass
from typing import Any, ClassVar, NoReturn
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import ResolveResult

from monitor import USER_AGENT, jsonpath
from monitor.config.common import Auth, TLSOptions, classify_origin, mask_query
from monitor.config.http import version_matches
from monitor.config.journey import (
    Extractor,
    HttpStep,
    JourneyProbeConfig,
    Step,
    WsCloseStep,
    WsConnectStep,
    WsExpectStep,
    WsSendStep,
)
from monitor.config.proxy import ProxyURL, bypassed
from monitor.config.types import format_duration
from monitor.gcp.tokens import id_token_header
from monitor.metricspecs import (
    HTTP_PHASES,
    HTTP_RESPONSES,
    JOURNEY_STEP_DURATION,
    JOURNEY_STEP_SUCCESS,
    PhaseSpec,
)
from monitor.net import proxy as proxies
from monitor.net.connect import Progress
from monitor.net.errors import classify as classify_net
from monitor.net.exhaustion import Lookup, executor_full, own_exhaustion
from monitor.net.fetch import Request, Response, fetch
from monitor.net.proxy import PROXY_PHASE
from monitor.net.resolve import FAMILIES, IpFamily, resolve
from monitor.net.tlsctx import client_context
from monitor.probes.base import (
    Probe,
    ProbeFailure,
    Reason,
    RunContext,
    Sample,
    response_series,
    zero,
)
from monitor.probes.expect import check_response
from monitor.redact import Redactor
from monitor.templates import render, render_json
from monitor.tracecontext import start_trace

# Closing the WebSocket and the session after the journey; the runner grants
# one second beyond the timeout, so this must stay well below it.
FINAL_CLOSE_SECONDS = 0.25
# A ws_close step waits this long for the server's close frame at most.
CLOSE_HANDSHAKE_SECONDS = 2.0
# How much of a received message a --debug trace line shows.
TRACE_MESSAGE_CHARS = 200
_ABNORMAL_CLOSE = 1006
_MESSAGE_TOO_BIG = 1009
_DNS_ERROR: Any = getattr(aiohttp, "ClientConnectorDNSError", ())
HTTP_PHASE_NAMES = ("dns", "connect", "tls", "ttfb", "transfer")
_CHARSET = re.compile(r"charset=\"?([A-Za-z0-9._:-]+)", re.IGNORECASE)


@dataclass(slots=True)
class StepOutcome:
    ok: bool
    duration: float


class JourneyProbe(Probe[JourneyProbeConfig]):
    """Runs the steps of a ``kind: journey`` config; one `_Walk` per run."""

    phase_metric: ClassVar[PhaseSpec | None] = None

    def __init__(self, config: JourneyProbeConfig) -> None:
        super().__init__(config)
        self.config: JourneyProbeConfig = config

    async def run(self, ctx: RunContext) -> Any:
        return await _Walk(self, ctx).run()

    def initial_samples(self) -> list[Sample]:
        steps = [zero(JOURNEY_STEP_DURATION, step=step.name)
                 for step in self.config.steps]
        http = [step.http for step in self.config.steps if step.http is not None]
        phases = [zero(HTTP_PHASES, phase=phase) for phase in HTTP_PHASE_NAMES if http]
        if any(action.proxy_url is not None for action in http):
            phases.append(zero(HTTP_PHASES, phase=PROXY_PHASE))
        return [*response_series(o.name for o in self.config.origins), *steps, *phases]

    def ssl_context(self, options: TLSOptions) -> ssl.SSLContext:
        """The one TLS context cache of every kind (a changed CA file reloads)."""
        return client_context(options, alpn=())


@dataclass(slots=True)
class _Route:
    """The proxy the next WebSocket connection goes through, and how."""

    proxy: ProxyURL
    progress: Progress
    family: IpFamily
    ssl: ssl.SSLContext | None  # None for ws://
    server_name: str | None


class _Resolver(aiohttp.abc.AbstractResolver):
    """aiohttp's lookups for WebSocket steps through monitor.net's resolver:
    its policy and ip_family, and a lookup that never got an executor thread
    is ours (reason ``error``), never the target's ``dns``."""

    def __init__(self, family: IpFamily) -> None:
        self.family = family
        self.lookup: Lookup | None = None  # the last lookup, to judge a timeout
        self.host = ""

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        self.lookup, self.host = Lookup(), host
        addresses = await resolve(host, port, self.family, self.lookup)
        return [ResolveResult(hostname=host, host=address, port=port,
                              family=socket.AF_INET6 if ":" in address else socket.AF_INET,
                              proto=0, flags=socket.AI_NUMERICHOST)
                for address in addresses]

    async def close(self) -> None:
        return None


class _TunnelConnector(aiohttp.TCPConnector):
    """aiohttp's connector, but a connection with ``route`` set is a CONNECT
    tunnel opened by :mod:`monitor.net.proxy` (the http steps' code: the same
    phases, reasons and "proxy HOST:PORT" details), with aiohttp's TLS and
    WebSocket on top. aiohttp's own ``proxy=`` would send ws:// in absolute
    form (``GET ws://host/path``), which tinyproxy answers 400; RFC 6455 4.1
    asks for CONNECT. ``_create_connection`` is the hook aiohttp's own Unix
    and named-pipe connectors override."""

    route: _Route | None = None

    async def _create_connection(self, req: Any, traces: Any, timeout: Any) -> Any:
        route, self.route = self.route, None
        if route is None:
            return await super()._create_connection(req, traces, timeout)
        host, port = req.url.raw_host or "", req.port or 0
        stream = await proxies.open_tunnel(route.proxy, host, port, route.progress,
                                           route.family)
        # The socket goes to aiohttp's protocol; the stream's transport lets go
        # of it (nothing of the origin's is buffered: it speaks after our GET).
        sock = stream.writer.get_extra_info("socket").dup()
        stream.close()
        route.progress.stage = "tls" if route.ssl is not None else "upgrade"
        try:
            _, protocol = await self._loop.create_connection(
                self._factory, sock=sock, ssl=route.ssl,
                server_hostname=(route.server_name or host) if route.ssl is not None else None)
        except (OSError, ssl.SSLError) as exc:
            sock.close()
            raise classify_net(exc, "tls", route.progress.target) from None
        route.progress.stage = "upgrade"
        return protocol


class _Walk:
    """One run of a journey: its session, WebSocket, variables and outcomes."""

    def __init__(self, probe: JourneyProbe, ctx: RunContext) -> None:
        self.probe = probe
        self.config = probe.config
        self.ctx = ctx
        self.deadline = ctx.started + self.config.timeout
        self.values: dict[str, str] = {}
        # Extracted values are known only now: mask them in what we hand out.
        self.redactor = Redactor()
        self.lines: list[str] = []
        self.outcomes: dict[str, StepOutcome] = {}
        self.session: aiohttp.ClientSession | None = None
        self.connector: _TunnelConnector | None = None
        self.resolver: _Resolver | None = None
        # The proxy, host and port of a ws_connect under way through a proxy.
        self.at_proxy: tuple[ProxyURL, str, int] | None = None
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        # What the current step waits for, for its timeout detail.
        self.waiting = ""
        self.resolving = False
        self.connecting = False
        # The http step under way (its stage tells what a timeout hit); the
        # phases of every http step add up in http_phases.
        self.progress: Progress | None = None
        self.http_phases: dict[str, float] = {}
        self.tracing = start_trace(ctx, self.config.trace_context)

    # -- the walk ------------------------------------------------------------
    async def run(self) -> Any:
        failure: tuple[Reason, str] | None = None
        try:
            for step in self.config.steps:
                failure = await self._step(step)
                if failure is not None:
                    break
        finally:
            await self._close()
        self._record()
        if failure is not None:
            return self.ctx.failure(failure[0], self.redactor.text(failure[1]))
        parts = ", ".join(f"{name} {_ms(o.duration)}" for name, o in self.outcomes.items())
        return self.ctx.success(f"{len(self.outcomes)} steps ok ({parts})")

    async def _step(self, step: Step) -> tuple[Reason, str] | None:
        remaining = max(self.deadline - time.monotonic(), 0.0)
        own = step.timeout
        limited = own is None or own > remaining
        budget = remaining if own is None or limited else own
        self.waiting, self.resolving, self.connecting = "", False, False
        self.progress, self.at_proxy = None, None
        started = time.monotonic()
        failure: tuple[Reason, str] | None = None
        try:
            if budget <= 0:
                raise ProbeFailure("timeout", f"the journey's timeout "
                                   f"({format_duration(self.config.timeout)}) ran out before "
                                   f"this step")
            async with asyncio.timeout(budget):
                await self._act(step)
        except ProbeFailure as exc:
            failure = (exc.reason, exc.detail)
        except aiohttp.ClientError as exc:  # before TimeoutError: some are both
            failure = classify(exc)
        except TimeoutError:
            failure = self._timed_out(budget, limited)
        except (OSError, ssl.SSLError) as exc:
            failure = classify(exc)
        duration = time.monotonic() - started
        self.outcomes[step.name] = StepOutcome(ok=failure is None, duration=duration)
        if failure is None:
            self._trace(step, f"ok in {duration:.3f}s")
            return None
        reason, detail = failure
        self._trace(step, f"failed: {reason}: {detail}")
        return reason, f"step {step.name!r}: {detail}"

    def _timed_out(self, budget: float, limited: bool) -> tuple[Reason, str]:
        spent = format_duration(round(budget, 3) or 0.001)
        tail = f" (what was left of the journey's {format_duration(self.config.timeout)})"
        tail = tail if limited else ""
        stage = self.progress.stage if self.progress is not None else None
        if self.at_proxy is not None and stage in ("dns", "connect", PROXY_PHASE):
            via, host, port = self.at_proxy
            if stage == PROXY_PHASE:
                failure = proxies.timed_out(via, host, port, budget)
                return failure.reason, failure.detail + tail
            reason, detail = self._timed_out_direct(stage, spent, tail)
            return reason, f"proxy {via.address}: {detail}"
        return self._timed_out_direct(stage, spent, tail)

    def _timed_out_direct(self, stage: str | None, spent: str, tail: str
                          ) -> tuple[Reason, str]:
        if self.resolving or stage == "dns":
            resolver = self.resolver
            if (self.resolving and resolver is not None and resolver.lookup is not None
                    and not resolver.lookup.started):
                ours = executor_full(resolver.host, self.config.timeout)
                return ours.reason, ours.detail
            return "dns", f"no DNS answer after {spent}{tail}"
        if self.connecting or stage == "connect":
            return "connect_timeout", f"connect not done after {spent}{tail}"
        return "timeout", f"timeout after {spent}{tail} {self.waiting}".rstrip()

    async def _act(self, step: Step) -> None:
        action = step.action
        if isinstance(action, HttpStep):
            await self._http(step, action)
        elif isinstance(action, WsConnectStep):
            await self._ws_connect(step, action)
        elif isinstance(action, WsSendStep):
            await self._ws_send(step, action)
        elif isinstance(action, WsExpectStep):
            await self._ws_expect(step, action)
        elif isinstance(action, WsCloseStep):
            await self._ws_close(step, action)

    # -- http ---------------------------------------------------------------
    async def _http(self, step: Step, action: HttpStep) -> None:
        url = self._render(action.url)
        headers = [(k, self._render(v.get_secret_value())) for k, v in action.headers.items()]
        data: bytes | None = None
        if action.json_body is not None:
            data = json.dumps(self._render_json(action.json_body)).encode()
            if not any(k.lower() == "content-type" for k, _ in headers):
                headers.append(("Content-Type", "application/json"))
        elif action.body is not None:
            data = self._render(action.body.get_secret_value()).encode()
        shown = mask_query(url, self.config.public_query)
        self._trace(step, f"> {action.method} {shown}")
        for name, value in headers:
            self._trace(step, f"> {name}: {value}")
        headers += (await self._id_token(step, action.auth)).items()
        self.waiting = f"waiting for the response to {action.method} {shown}"
        request = self.tracing.apply(Request(
            url=url, method=action.method, headers=headers, body=data,
            public_query=frozenset(self.config.public_query)))
        self.progress = Progress(phases=self.http_phases)
        try:
            # The step's own timeout (around this call) ends it; the fetch's is
            # only a bound of last resort.
            response = await fetch(
                request, timeout=self.config.timeout + 1.0, tls=action.tls,
                max_redirects=action.max_redirects, max_body_bytes=action.max_body_bytes,
                on_response=self._count, ip_family=self.config.ip_family,
                progress=self.progress, http_versions=action.http_versions,
                proxy=action.proxy_url, no_proxy=action.no_proxy,
            )
        except ValueError:  # what the variables made of the URL cannot be requested
            raise ProbeFailure("assertion", "the URL is invalid once its variables are "
                                            "filled in") from None
        body = response.body
        self._trace(step, f"< HTTP/{response.http_version} {response.status} "
                          f"{response.reason}".rstrip())
        self._trace(step, f"< body {len(body)} bytes")
        status = response.status
        if not action.expect.status_ok(status):
            want = ", ".join(map(str, action.expect.status)) or "2xx"
            reason: Reason = "capacity" if status == 429 else "http_status"
            raise ProbeFailure(reason, f"expected status {want}, got {status}")
        wanted = action.expect.http_version
        if wanted is not None and not version_matches(wanted, response.http_version):
            raise ProbeFailure("assertion", f"HTTP/{response.http_version} was spoken, "
                                            f"expected {wanted}")
        found = _CHARSET.search(response.header("content-type") or "")
        try:
            text = body.decode(found[1] if found else "utf-8", "replace")
        except LookupError:  # an unknown charset name
            text = body.decode("utf-8", "replace")
        check_response(action.expect, response.headers, lambda: text, quote=False)
        for name, extractor in action.extract.items():
            value = _extract(name, extractor, text)
            self.values[name] = value
            self.redactor.add(value)
            self._trace(step, f"extracted {name} ({len(value)} characters)")

    def _count(self, response: Response) -> None:
        self.ctx.inc(HTTP_RESPONSES, code=str(response.status),
                     origin=classify_origin(self.config.origins, response.header_map))

    async def _id_token(self, step: Step, auth: Auth) -> dict[str, str]:
        """The ID-token header of ``auth`` (IAM-protected Cloud Run), or nothing."""
        extra = await id_token_header(auth)
        for name in extra:
            self._trace(step, f"> {name}: <redacted ID token>")
        return extra

    # -- WebSocket ------------------------------------------------------------
    async def _ws_connect(self, step: Step, action: WsConnectStep) -> None:
        url = self._render(action.url)
        headers = {k: self._render(v.get_secret_value()) for k, v in action.headers.items()}
        shown = mask_query(url, self.config.public_query)
        self._trace(step, f"> GET {shown} (WebSocket upgrade)")
        for name, value in headers.items():
            self._trace(step, f"> {name}: {value}")
        headers.update(await self._id_token(step, action.auth))
        self.tracing.update(headers)
        self.waiting = f"waiting for the upgrade of {shown}"
        session = self._session()
        self._route(step, action, url)
        try:
            ws = await session.ws_connect(
                url, headers=headers, protocols=action.subprotocols,
                timeout=aiohttp.ClientWSTimeout(ws_receive=None,
                                                ws_close=CLOSE_HANDSHAKE_SECONDS),
                autoclose=True, autoping=True, heartbeat=None,
                max_msg_size=action.max_message_bytes,
                ssl=self.probe.ssl_context(action.tls), server_hostname=action.tls.server_name,
            )
        except aiohttp.WSServerHandshakeError as exc:
            status = exc.status
            self._trace(step, f"< HTTP {status}: {exc.message}")
            if status in (401, 403):
                raise ProbeFailure("auth", f"upgrade refused with HTTP {status}") from None
            if status == 429:
                raise ProbeFailure("capacity", "upgrade refused with HTTP 429") from None
            if status == 101:
                raise ProbeFailure("protocol", f"invalid WebSocket handshake: {exc.message}") \
                    from None
            raise ProbeFailure("http_status", f"upgrade answered with HTTP {status}") from None
        finally:
            if self.connector is not None:
                self.connector.route = None  # never for a later connection
        self.ws = ws
        self._trace(step, "< HTTP 101 Switching Protocols")
        if action.subprotocols and ws.protocol is None:
            raise ProbeFailure("protocol", "the server chose none of the offered subprotocols "
                                           f"({', '.join(action.subprotocols)})")

    def _route(self, step: Step, action: WsConnectStep, url: str) -> None:
        """Send the coming connection through ``proxy_url`` unless ``no_proxy``
        matches the URL's host."""
        proxy = action.proxy_url
        parsed = _url_parts(url)
        if proxy is None or parsed is None or bypassed(action.no_proxy, parsed[0]):
            if proxy is not None:
                self._trace(step, "* direct (no_proxy)")
            return
        host, port, secure = parsed
        assert self.connector is not None
        # Its own phases: the metric sums http steps only (as dns and connect
        # of WebSocket steps are not in it); its stage tells what a timeout hit.
        self.progress = Progress()
        self.at_proxy = (proxy, host, port)
        self.connector.route = _Route(
            proxy, self.progress, self.config.ip_family,
            self.probe.ssl_context(action.tls) if secure else None, action.tls.server_name)
        self._trace(step, f"* CONNECT {proxies.authority(host, port)} via proxy "
                          f"{proxy.address}" + (" (Proxy-Authorization sent)"
                                                if proxy.authorization else ""))

    def _open_ws(self) -> aiohttp.ClientWebSocketResponse:
        if self.ws is None:  # config validation makes this a bug of ours
            raise RuntimeError("no open WebSocket")
        return self.ws

    async def _ws_send(self, step: Step, action: WsSendStep) -> None:
        ws = self._open_ws()
        if ws.closed:
            _closed(ws)
        if action.json_body is not None:
            payload = json.dumps(self._render_json(action.json_body))
        else:
            payload = self._render(action.text or "")
        self.waiting = "sending the message"
        await ws.send_str(payload)
        self._trace(step, f"> text message, {len(payload)} characters")

    async def _ws_expect(self, step: Step, action: WsExpectStep) -> None:
        ws = self._open_ws()
        matcher = action.matcher_text()
        expected = (
            self._render_json(action.json_match) if action.json_match is not None else None
        )
        skipped = 0
        last = ""
        while True:
            skip_note = f" ({_plural(skipped, 'other message')} skipped)" if skipped else ""
            self.waiting = f"waiting for {matcher}{skip_note}"
            msg = await ws.receive()
            if msg.type == aiohttp.WSMsgType.TEXT:
                text = str(msg.data)
            elif msg.type == aiohttp.WSMsgType.BINARY:
                text = bytes(msg.data).decode("utf-8", "replace")
            elif msg.type == aiohttp.WSMsgType.CLOSE:
                extra = f" ({str(msg.extra)[:80]})" if msg.extra else ""
                raise ProbeFailure(
                    "protocol",
                    f"the server closed the WebSocket with code {msg.data}{extra} "
                    f"while waiting for {matcher}{skip_note}",
                )
            elif msg.type == aiohttp.WSMsgType.ERROR:
                _receive_error(msg.data, ws)
            else:  # CLOSING, CLOSED
                _closed(ws)
            self._trace(step, f"< {_cut(text)}")
            if _matches(text, expected, action):
                return
            skipped += 1
            last = _kind_of(text)
            if skipped > action.max_skipped:
                raise ProbeFailure(
                    "assertion",
                    f"{_plural(skipped, 'message')} did not match {matcher} "
                    f"(max_skipped {action.max_skipped}); the last was {last}",
                )

    async def _ws_close(self, step: Step, action: WsCloseStep) -> None:
        ws = self._open_ws()
        self.waiting = "waiting for the close handshake"
        self.ws = None
        await ws.close(code=action.code)
        self._trace(step, f"closed with code {action.code}")

    # -- plumbing -----------------------------------------------------------
    def _session(self) -> aiohttp.ClientSession:
        if self.session is None:
            # Only WebSocket steps use this session; http steps run on the house client.
            trace = aiohttp.TraceConfig()
            trace.on_request_end.append(self._on_response)
            trace.on_request_redirect.append(self._on_response)
            trace.on_dns_resolvehost_start.append(self._on_dns_start)
            trace.on_dns_resolvehost_end.append(self._on_dns_end)
            trace.on_connection_create_start.append(self._on_connect_start)
            trace.on_connection_create_end.append(self._on_connect_end)
            self.resolver = _Resolver(self.config.ip_family)
            self.connector = _TunnelConnector(force_close=True, use_dns_cache=False,
                                              family=FAMILIES[self.config.ip_family],
                                              resolver=self.resolver)
            self.session = aiohttp.ClientSession(
                connector=self.connector,
                headers={"User-Agent": USER_AGENT},
                trace_configs=[trace],
                timeout=aiohttp.ClientTimeout(total=None),  # our steps own the time
                cookie_jar=aiohttp.DummyCookieJar(),
            )
            # aiohttp resends an idempotent request (GET, and so a WebSocket
            # upgrade) once when its connection is reset, even on a fresh
            # connection; a probe must never retry, the reset is what we count.
            # tests/unit/probes/test_journey.py pins this.
            self.session._retry_connection = False
        return self.session

    async def _on_response(self, _session: Any, _ctx: Any, params: Any) -> None:
        response = params.response
        headers = {k.lower(): v for k, v in response.headers.items()}
        self.ctx.inc(HTTP_RESPONSES, code=str(response.status),
                     origin=classify_origin(self.config.origins, headers))

    async def _on_dns_start(self, *_: Any) -> None:
        self.resolving = True

    async def _on_dns_end(self, *_: Any) -> None:
        self.resolving = False

    async def _on_connect_start(self, *_: Any) -> None:
        self.connecting = True

    async def _on_connect_end(self, *_: Any) -> None:
        self.connecting = False

    async def _close(self) -> None:
        """Close the WebSocket and the session, bounded: the runner's grace is short."""
        ws, self.ws = self.ws, None
        if ws is not None and not ws.closed:
            try:
                async with asyncio.timeout(FINAL_CLOSE_SECONDS):
                    await ws.close()
            except (TimeoutError, aiohttp.ClientError, OSError):
                pass  # the session's close below drops the connection anyway
        session, self.session = self.session, None
        if session is not None:
            try:
                async with asyncio.timeout(FINAL_CLOSE_SECONDS):
                    await session.close()
            except (TimeoutError, aiohttp.ClientError, OSError):
                pass

    def _record(self) -> None:
        """Per-step samples; steps that did not run count as not succeeded."""
        ran: list[dict[str, Any]] = []
        failed: str | None = None
        for step in self.config.steps:
            outcome = self.outcomes.get(step.name)
            ok = outcome is not None and outcome.ok
            self.ctx.set(JOURNEY_STEP_SUCCESS, 1 if ok else 0, step=step.name)
            if outcome is None:
                continue
            self.ctx.observe(JOURNEY_STEP_DURATION, outcome.duration,
                             step=step.name)
            self.ctx.phase(step.name, outcome.duration)
            ran.append({"name": step.name, "ok": outcome.ok,
                        "duration": round(outcome.duration, 6)})
            if not outcome.ok:
                failed = step.name
        for phase, seconds in self.http_phases.items():
            self.ctx.observe(HTTP_PHASES, seconds, phase=phase)
        self.ctx.facts["steps"] = ran
        self.ctx.facts["failed_step"] = failed
        for line in self.lines:
            self.ctx.trace(self.redactor.text(line))

    def _trace(self, step: Step, line: str) -> None:
        # Kept here and redacted at the end, when every extracted value is known.
        if self.ctx.debug:
            self.lines.append(f"step {step.name!r}: {line}")

    def _render(self, text: str) -> str:
        try:
            return render(text, self.values)
        except KeyError as exc:
            raise ProbeFailure("assertion", f"variable ${{{exc.args[0]}}} has no value") from None

    def _render_json(self, value: Any) -> Any:
        try:
            return render_json(value, self.values)
        except KeyError as exc:
            raise ProbeFailure("assertion", f"variable ${{{exc.args[0]}}} has no value") from None


def _extract(name: str, extractor: Extractor, text: str) -> str:
    if extractor.regex is not None:
        match = extractor.regex.search(text)
        if match is None or not match.group(1):
            raise ProbeFailure(
                "assertion", f"extract {name}: regex {extractor.source!r} found nothing"
            )
        return match.group(1)
    try:
        document = jsonpath.loads(text)
    except jsonpath.NotJson:
        raise ProbeFailure("assertion", f"extract {name}: the body is not JSON") from None
    value = jsonpath.find(extractor.path or (), document)
    if value is jsonpath.MISSING:
        value = None
    if value is None or value == "":
        raise ProbeFailure("assertion", f"extract {name}: {extractor.source} found nothing")
    if isinstance(value, dict | list):
        raise ProbeFailure(
            "assertion", f"extract {name}: {extractor.source} is not a single value"
        )
    return value if isinstance(value, str) else json.dumps(value)


def _matches(text: str, expected: Any, action: WsExpectStep) -> bool:
    if action.regex is not None:
        return action.regex.search(text) is not None
    try:
        value = jsonpath.loads(text)
    except jsonpath.NotJson:  # also nested too deeply to parse: a hostile peer
        return False
    return subset(expected, value)


def subset(expected: Any, actual: Any) -> bool:
    """``expected`` is contained in ``actual``: mappings by key, lists item by item."""
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(
            key in actual and subset(value, actual[key]) for key, value in expected.items()
        )
    if isinstance(expected, list):
        return (isinstance(actual, list) and len(actual) == len(expected)
                and all(subset(e, a) for e, a in zip(expected, actual, strict=True)))
    # 1 == 1.0 but True != 1: JSON booleans are not numbers.
    if isinstance(expected, bool) or isinstance(actual, bool):
        return expected is actual
    return bool(expected == actual)


def _kind_of(text: str) -> str:
    """How a skipped message is named in a detail: its `type`, never its content."""
    try:
        value = jsonpath.loads(text)
    except jsonpath.NotJson:
        return f"a non-JSON message of {len(text)} characters"
    if isinstance(value, dict) and isinstance(value.get("type"), str):
        return f"type {_cut(value['type'], 40)!r}"
    return f"a JSON message of {len(text)} characters"


def _receive_error(error: Any, ws: aiohttp.ClientWebSocketResponse) -> NoReturn:
    if isinstance(error, aiohttp.WebSocketError) and error.code == _MESSAGE_TOO_BIG:
        raise ProbeFailure("assertion", "a message is larger than max_message_bytes")
    if isinstance(error, aiohttp.ClientError | OSError):
        raise ProbeFailure(*classify(error))
    raise ProbeFailure("protocol", f"invalid WebSocket frame: {_cut(str(error), 120)}")


def _closed(ws: aiohttp.ClientWebSocketResponse) -> NoReturn:
    code = ws.close_code
    if code is None or code == _ABNORMAL_CLOSE:
        raise ProbeFailure("connection_reset", "the WebSocket connection was lost")
    raise ProbeFailure("protocol", f"the WebSocket is closed (code {code})")


def classify(exc: BaseException) -> tuple[Reason, str]:
    """An aiohttp or socket error -> (reason, detail)."""
    own = own_exhaustion(exc)
    if own is not None:
        return own.reason, own.detail
    if isinstance(exc, _DNS_ERROR):
        return "dns", f"cannot resolve {exc.host}"
    if isinstance(exc, aiohttp.ClientSSLError | ssl.SSLError):
        return "tls", f"TLS handshake failed: {_cut(str(exc), 200)}"
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return "connect_timeout", "connect not done in time"
    if isinstance(exc, aiohttp.ClientConnectorError):
        # The one classifier of monitor.net: an accept-then-reset is a reset here too.
        failure = classify_net(exc.os_error, "connect", f"{exc.host}:{exc.port}")
        return failure.reason, failure.detail
    if isinstance(exc, aiohttp.TooManyRedirects):
        return "http_status", "redirects ran out (max_redirects)"
    if isinstance(exc, aiohttp.ServerTimeoutError):
        return "timeout", "no answer in time"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "connection_reset", "the server closed the connection before answering"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return "connection_reset", f"the body was cut short: {_cut(str(exc), 120)}"
    if isinstance(exc, aiohttp.ClientConnectionResetError | ConnectionResetError
                  | BrokenPipeError):
        return "connection_reset", "the connection was reset"
    if isinstance(exc, aiohttp.ClientOSError | OSError):
        return "connection_reset", f"connection lost: {exc.strerror or exc}"
    if isinstance(exc, aiohttp.InvalidURL):
        return "assertion", "the URL is invalid once its variables are filled in"
    if isinstance(exc, aiohttp.ClientResponseError):
        return "protocol", f"not a valid HTTP response: {_cut(exc.message, 120)}"
    return "protocol", f"{type(exc).__name__}: {_cut(str(exc), 120)}"


def _url_parts(url: str) -> tuple[str, int, bool] | None:
    """(host, port, wss?) of a rendered ws URL; None when it cannot be parsed
    (aiohttp then fails it as an invalid URL)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if not parts.hostname:
        return None
    secure = parts.scheme.lower() == "wss"
    return parts.hostname, port or (443 if secure else 80), secure


def _cut(text: str, limit: int = TRACE_MESSAGE_CHARS) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def _ms(seconds: float) -> str:
    ms = seconds * 1000
    return f"{ms:.0f}ms" if ms >= 1 else f"{ms:.1f}ms"


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"

