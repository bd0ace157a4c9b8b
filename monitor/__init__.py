"""monitor: a synthetic monitoring daemon for the layers behind a 503."""

__version__ = "0.1.0"
USER_AGENT = f"monitor/{__version__}"
