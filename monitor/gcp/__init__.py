"""Google Cloud credentials the kinds send (tokens.py: ID and access tokens).

Outside monitor/probes because they are not a kind: http, lb, load, journey
and sql send them, and attribution_logging writes to Cloud Logging with them.
"""

# monitor.probes.base holds ProbeFailure; importing the probes package first
# keeps the import order one way (probes -> gcp) whichever module loads first.
import monitor.probes  # noqa: F401
