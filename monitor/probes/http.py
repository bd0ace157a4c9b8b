"""`kind: http`: one request on a fresh connection, checked against `expect`.

One run resolves the host (no DNS cache), connects, does the TLS handshake
on https, sends the request and reads the response, following redirects up
to ``max_redirects`` (a fresh connection for each hop). Phases dns, connect,
tls, ttfb and transfer are summed over hops and exported as
``monitor_http_phase_duration_seconds``; every response, redirects
included, is counted in ``monitor_http_responses_total{code,origin}``,
where ``origin`` comes from the probe's ``origins`` rules.

Failure reasons for this kind:

    auth              ``auth.google_id_token``: no ID token could be had
    dns               the host does not resolve
    connect_refused   the port refused (or the host was unreachable)
    connect_timeout   TCP connect not done within the timeout
    tls               certificate rejected (untrusted, expired, wrong host)
                      or handshake failure
    connection_reset  reset, or closed before a complete response
    timeout           connected, but no complete response within the timeout
    protocol          the peer does not speak HTTP/1.x or HTTP/2 (invalid status
                      line, head over 64 KiB, broken chunking, invalid HTTP/2
                      frames); a gzip or deflate body that does not decode; ALPN
                      chose nothing when ``http_versions`` offers only h2
    capacity          429 where it was not expected (the platform is out of room)
    http_status       any other status not in ``expect.status`` (default 2xx);
                      or redirects exhausted
    assertion         another protocol than ``expect.http_version`` was
                      negotiated (h2 or http/1.1, from ALPN); body over
                      ``max_body_bytes`` (decoded: gzip and deflate bodies
                      are inflated within the cap), a header, body or
                      JSON check of ``expect`` failed (:mod:`monitor.probes.expect`;
                      the detail names the check), slower than ``max_duration``

The request goes through :mod:`monitor.net.fetch`, which never retries
and decodes bodies with :mod:`monitor.net.compression`.
"""

from __future__ import annotations

from typing import ClassVar
from urllib.parse import urlsplit

from monitor.config.common import classify_origin
from monitor.config.http import HttpProbeConfig, version_matches
from monitor.config.proxy import bypassed
from monitor.gcp.tokens import IdTokenProvider, with_id_token
from monitor.metricspecs import HTTP_PHASES, HTTP_RESPONSES, PhaseSpec
from monitor.net.fetch import Response, fetch, request_of
from monitor.net.proxy import PROXY_PHASE
from monitor.probes.base import (
    Probe,
    ProbeFailure,
    Reason,
    Result,
    RunContext,
    Sample,
    response_series,
    zero,
)
from monitor.probes.expect import check_response
from monitor.tracecontext import start_trace

# How much of a body a failure detail quotes (the detail itself is capped).
DETAIL_BODY_CHARS = 80


class HttpProbe(Probe[HttpProbeConfig]):
    phase_metric: ClassVar[PhaseSpec | None] = HTTP_PHASES
    phases: ClassVar[tuple[str, ...]] = ("dns", "connect", "tls", "ttfb", "transfer")
    config: HttpProbeConfig

    def __init__(self, config: HttpProbeConfig, *,
                 id_tokens: IdTokenProvider | None = None) -> None:
        super().__init__(config)
        self._id_tokens = id_tokens  # None: the process-wide provider
        # Built once: the config is immutable and rebuilt on reload.
        self._request = request_of(config)

    def initial_samples(self) -> list[Sample]:
        samples = response_series(rule.name for rule in self.config.origins)
        if self.config.proxy_url is not None:  # only probes that can have the phase
            samples.append(zero(HTTP_PHASES, phase=PROXY_PHASE))
        return samples

    async def run(self, ctx: RunContext) -> Result:
        config = self.config
        origin_of_last = "unclassified"

        def count(response: Response) -> None:
            nonlocal origin_of_last
            origin_of_last = classify_origin(config.origins, response.header_map)
            ctx.inc(HTTP_RESPONSES, code=str(response.status), origin=origin_of_last)

        # Fetched (or taken from the cache) before the clock of the request
        # starts; a token that cannot be had fails the run with `auth`.
        request = await with_id_token(self._request, config.auth, self._id_tokens)
        request = start_trace(ctx, config.trace_context).apply(request)
        started = ctx.elapsed()
        remaining = config.timeout - started
        if remaining <= 0:
            raise ProbeFailure("timeout", f"no time left for the request after "
                                          f"{started:.3g}s getting the ID token")
        response = await fetch(
            request, timeout=remaining, ctx=ctx, tls=config.tls,
            max_redirects=config.max_redirects, max_body_bytes=config.max_body_bytes,
            on_response=count, ip_family=config.ip_family,
            http_versions=config.http_versions, proxy=config.proxy_url,
            no_proxy=config.no_proxy,
        )
        # The request's own duration: a token fetch (once an hour) is not
        # what max_duration judges.
        took = ctx.elapsed() - started
        parts = urlsplit(response.url)
        ctx.facts.update({
            "status": response.status,
            "http_version": response.http_version,
            # Without the query: it may carry a token.
            "url": f"{parts.scheme}://{parts.netloc}{parts.path}",
            "tls_version": response.tls_version,
            "origin": origin_of_last,
            "redirects": len(response.history),
            "body_bytes": len(response.body),  # decoded: what the checks saw
            "body_wire_bytes": response.wire_bytes,
            "content_encoding": response.header("content-encoding"),
        })
        if config.proxy_url is not None:  # host:port only: never the credentials
            direct = bypassed(config.no_proxy, parts.hostname or "")
            ctx.facts["proxy"] = "direct (no_proxy)" if direct else config.proxy_url.address
        summary = (f"{response.status} {response.reason} from {origin_of_last} "
                   f"in {took * 1000:.1f}ms")

        expect = config.expect
        if not expect.status_ok(response.status):
            wanted = ", ".join(map(str, expect.status)) if expect.status else "2xx"
            reason: Reason = "capacity" if response.status == 429 else "http_status"
            raise ProbeFailure(reason, f"status {response.status} (expected {wanted}), "
                                       f"origin {origin_of_last}{_quote(response)}")
        if expect.http_version is not None and not version_matches(expect.http_version,
                                                                    response.http_version):
            raise ProbeFailure("assertion", f"HTTP/{response.http_version} was spoken, "
                                            f"expected {expect.http_version} ({summary})")
        check_response(expect, response.headers, response.text)
        if expect.max_duration is not None and took > expect.max_duration:
            raise ProbeFailure("assertion", f"took {took:.3f}s, more than max_duration "
                                            f"{expect.max_duration:g}s ({summary})")
        version = f", {response.tls_version}" if response.tls_version else ""
        return ctx.success(f"{summary}, HTTP/{response.http_version}{version}")


def _quote(response: Response) -> str:
    """The start of the body, to say what came back (the runner redacts)."""
    if not response.body:
        return ""
    return f"; body: {response.text(DETAIL_BODY_CHARS * 4)[:DETAIL_BODY_CHARS]!r}"
