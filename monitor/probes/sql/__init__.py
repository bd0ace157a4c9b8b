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

The kinds registry imports ``SqlProbe`` from here; the rest is imported
from its module.
"""

from monitor.probes.sql.probe import SqlProbe

__all__ = ["SqlProbe"]
