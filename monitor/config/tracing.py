"""`trace_context:` of the probes that send HTTP (http, lb, load, burst url mode,
journey) and the top-level `attribution:` block (docs/attribution.md)."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import Field, field_validator

from monitor.config.common import Strict
from monitor.config.types import Duration


class TraceContextConfig(Strict):
    """Which trace headers every request of the probe carries (all on by default).

    ``w3c``: ``traceparent: 00-<trace id>-<span id>-<flags>`` (W3C Trace Context);
    ``google``: ``X-Cloud-Trace-Context: <trace id>/<decimal span id>;o=<0|1>``,
    which Google's load balancer and Cloud Run read to fill the ``trace``
    field of their request logs; ``sampled``: the sampled flag of both.
    """

    w3c: bool = True
    google: bool = True
    sampled: bool = True


# Cloud Logging's entries:list quota is 60 requests a minute per project
# (Cloud Logging quotas page): the cap stays well below, so that the lookups
# of an outage cannot starve whoever else reads the project's logs.
MAX_LOOKUPS_PER_MINUTE = 30
MAX_QUEUE = 1000
_PROJECT = re.compile(r"[a-z][a-z0-9-]{4,28}[a-z0-9]|[a-z0-9.:-]{1,100}")


class AttributionConfig(Strict):
    """Look failed runs' trace ids up in Cloud Logging (off unless configured)."""

    project: str
    # Where entries:list is sent; tests point it at a fake on 127.0.0.1.
    endpoint: str = "https://logging.googleapis.com"
    # Logs reach Cloud Logging seconds to a minute after the request: a
    # lookup right after the failure would find nothing.
    delay: Duration = 30.0
    timeout: Duration = 10.0
    # How far around the run's start the lookup's timestamp filter reaches.
    window: Duration = 300.0
    max_lookups_per_minute: Annotated[int, Field(ge=1, le=MAX_LOOKUPS_PER_MINUTE)] = 10
    queue_size: Annotated[int, Field(ge=1, le=MAX_QUEUE)] = 100
    # entries:list pages read per lookup (a load balancer probe run is many requests).
    max_pages: Annotated[int, Field(ge=1, le=10)] = 3
    page_size: Annotated[int, Field(ge=1, le=1000)] = 100

    @field_validator("project")
    @classmethod
    def _project(cls, value: str) -> str:
        if not _PROJECT.fullmatch(value):
            raise ValueError(f"project must be a Google Cloud project id, got {value!r}")
        return value

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, value: str) -> str:
        if not re.fullmatch(r"https?://[A-Za-z0-9.\[\]:-]+", value):
            raise ValueError("endpoint must be scheme://host[:port] with no path, "
                             f"got {value!r}")
        return value
