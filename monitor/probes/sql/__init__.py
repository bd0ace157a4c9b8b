"""`kind: sql`: a fresh database connection, a query, the server's headroom.

The package, by job:

    probe.py           the probe: one run, the burst, what goes to metrics
    postgres.py        asyncpg: the session and its one timing hook (fenced)
    mysql.py           aiomysql: the session and its two overrides (fenced)
    dial.py            the host through monitor.net's resolver, its addresses
                       tried in order until one accepts (the policy of every kind)
    tls.py             TLS contexts from monitor.net's cache (client certificates,
                       reloaded on change), the name verified per connect, and
                       the TLS phase, timed through the standard library
    classification.py  driver exceptions -> reasons
    credentials.py     password, password_file re-read, IAM access tokens
    session.py         what the probe and the drivers share (the timeline)

The names below are the package's public face (``monitor.probes.sql`` was
one module before; they keep importing from here).
"""

from monitor.probes.sql.classification import classify, foreign_answer
from monitor.probes.sql.probe import SqlProbe
from monitor.probes.sql.session import Marks
from monitor.probes.sql.tls import make_ssl_context

__all__ = [
    "Marks",
    "SqlProbe",
    "classify",
    "foreign_answer",
    "make_ssl_context",
]
