"""The transport under every probe kind: resolve, connect, TLS, classify.

    resolve.py     one resolver and its policy for hosts with several
                   addresses, with the ``ip_family`` preference (sql too:
                   its drivers dial the addresses, monitor/probes/sql/dial.py)
    connect.py     one timed, classified TCP connect (and TLS on top):
                   :func:`open_stream`, used by http, lb, load, burst,
                   journey, tcp and tls
    tlsctx.py      one cache of TLS client contexts (CA file reloaded on
                   change, client certificate, ALPN, the context's class)
    errors.py      one classifier: (exception, stage) -> reason
    http1.py       an HTTP/1.x response parser without I/O (bytes in,
                   events out)
    http2.py       HTTP/2 on one connection, on the ``h2`` state machine
    proxy.py       through an HTTP proxy: CONNECT, or absolute-form for http
    compression.py gzip and deflate bodies, decoded within the cap
    fetch.py       the HTTP fetch on top: socket, phases, redirects, the
                   HTTP/1.1 or HTTP/2 dispatch, proxies (http, lb, load,
                   burst, journey's http steps)
    exhaustion.py  our own lack of resources is never the target's failure

Resolver policy (the same for every kind): a name is resolved on every
run (no cache), with ``getaddrinfo`` filtered by ``ip_family`` (``ipv4``,
``ipv6`` or ``any``, the default), in the order the system resolver
returns (RFC 6724 sorting). A connect tries those addresses in that order
until one accepts, all within the one deadline of the run; this is not a
retry, since nothing was sent yet (a dual-stack name may be unreachable
over one family). When every address fails, the reason is that of the
first address (``connect_refused``, ``connect_timeout``, ...), and the
detail lists each. ``kind: burst`` pins a run to the first address, and
``kind: lb`` with ``per_address`` probes each address on its own.
"""

# monitor.probes.base holds ProbeFailure; importing the probes package first
# keeps the import order one way (probes -> net) whichever module loads first.
import monitor.probes  # noqa: F401
