"""The demo's wiring: its config source carries the stack's values; reloads need no os.environ."""

from __future__ import annotations

import os

from monitor.daemon import Daemon
from monitor.demo.stack import DemoStack, demo_source
from monitor.metrics import ConstLabelRegistry, Metrics
from monitor.redact import Redactor


async def test_demo_config_loads_and_reloads_without_writing_the_environment() -> None:
    """The daemon reloads the edited demo config from its source; no DEMO_* in os.environ."""
    before = dict(os.environ)
    async with DemoStack() as stack:
        source = demo_source(stack, 9469, {})
        config = source.load()
        daemon = Daemon(source, config, metrics=Metrics(ConstLabelRegistry()),
                        redactor=Redactor())
        assert source.path is not None
        text = source.path.read_text(encoding="utf-8")
        edited = text.replace("name: edge-lb", "name: edge-lb-renamed", 1)
        assert edited != text
        source.path.write_text(edited, encoding="utf-8")
        try:
            assert await daemon.reload() == []
            assert "edge-lb-renamed" in {p.name for p in daemon.config.probes}
        finally:
            await daemon.stop()
    assert dict(os.environ) == before
