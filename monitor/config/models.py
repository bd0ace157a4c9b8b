"""The whole config: `global`, `server` and the probes (docs/architecture.md, Config)."""

from __future__ import annotations

import functools
import operator
import re
import ssl
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any, TypeAlias, get_args

from pydantic import Field, SerializeAsAny, TypeAdapter, field_validator, model_validator

from monitor.config.common import ProbeBase, Strict
from monitor.config.tracing import AttributionConfig
from monitor.config.types import Duration, Ratio, read_file, shorten

# Any kind's config. Each kind's code sees its own model, through the probe
# class generic over it (Probe[HttpProbeConfig]); nothing else narrows.
ProbeConfig: TypeAlias = ProbeBase


class ProbeKinds:
    """The kinds a config may name: their models, validated as one union
    discriminated by ``kind``.

    Config is data and cannot import the probes, so it does not list the
    kinds: the one registry, ``monitor.probes.KINDS`` (kind -> probe class,
    each generic over its model), builds this as ``PROBE_KINDS`` and whoever
    loads a config hands it to the loader (``ConfigSource``, ``load_config``).
    """

    def __init__(self, models: Iterable[type[ProbeBase]]) -> None:
        self.models = tuple(models)
        if not self.models:
            raise ValueError("no probe kinds")
        self.names = tuple(kind_of(model) for model in self.models)
        if len(set(self.names)) != len(self.names):
            raise ValueError(f"a kind named twice in {self.names}")
        union = functools.reduce(operator.or_, self.models)
        # Annotated over a union built at run time: pydantic reads it as it
        # would the spelt-out union (mypy cannot, hence the Any). Discriminated
        # even for one model: the loader's messages expect the kind first.
        annotated: Any = Annotated
        self._adapter: TypeAdapter[ProbeBase] = TypeAdapter(
            annotated[union, Field(discriminator="kind")])

    def validate(self, item: dict[str, Any], context: dict[str, Any]) -> ProbeBase:
        """One probe's mapping as its kind's model; raises pydantic's ValidationError."""
        return self._adapter.validate_python(item, context=context)


def kind_of(model: type[ProbeBase]) -> str:
    """The kind a model stands for: its ``kind: Literal[...]`` field."""
    (kind,) = get_args(model.model_fields["kind"].annotation)
    return str(kind)

# Label names we set ourselves cannot be constant labels too.
RESERVED_LABELS = frozenset({
    "probe", "kind", "level", "layer", "service", "target", "result", "reason", "code",
    "origin", "phase", "step", "outcome", "backend", "address", "state", "version",
    "job", "instance", "le", "quantile",
})


class GlobalConfig(Strict):
    interval: Duration = 30.0
    timeout: Duration = 10.0
    jitter: Annotated[Ratio, Field(le=0.5)] = 0.1
    labels: dict[Annotated[str, Field(pattern=r"^[a-zA-Z_][a-zA-Z0-9_]*$")], str] = Field(
        default_factory=dict
    )
    # The verdict window of the daemon (docs/architecture.md, Verdict).
    verdict_window: Duration = 900.0

    @model_validator(mode="after")
    def _labels_free(self) -> GlobalConfig:
        taken = sorted(set(self.labels) & RESERVED_LABELS)
        if taken:
            raise ValueError(f"labels {', '.join(taken)} are set by monitor itself")
        return self


class ServerTLS(Strict):
    """The server's certificate and key, loaded (and so checked) at load time."""

    cert_file: Path
    key_file: Path

    @model_validator(mode="after")
    def _loads(self) -> ServerTLS:
        read_file(self.cert_file, "cert_file")
        read_file(self.key_file, "key_file")
        try:
            self.context()
        except (ssl.SSLError, OSError) as exc:
            reason = getattr(exc, "reason", None) or exc.strerror or str(exc)
            if "PEM lib" in str(exc):  # OpenSSL says no more than this
                reason = "not a PEM certificate and its unencrypted PEM private key"
            raise ValueError(f"cannot use cert_file {str(self.cert_file)!r} with key_file "
                             f"{str(self.key_file)!r}: {reason}") from None
        return self

    def context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        # An encrypted key would make OpenSSL prompt on the terminal: refuse it.
        context.load_cert_chain(self.cert_file, self.key_file, password=_no_password)
        return context


def _no_password() -> bytes:
    raise ssl.SSLError("the key is encrypted (not supported: give an unencrypted key)")


# `$2b$<cost>$<22 characters of salt><31 of hash>`, as htpasswd -B writes.
_BCRYPT = re.compile(r"\$2[aby]\$(\d\d)\$[./A-Za-z0-9]{53}")
# Above this cost one check takes about a second on a small VM (0.8 s at
# 14 on the 2-core test machine), and every login that is not cached waits for it.
MAX_BCRYPT_COST = 14
MIN_BCRYPT_COST = 4


def _check_user(user: str, hashed: str) -> str | None:
    """A sentence saying what is wrong with one basic_auth_users entry, or None."""
    if not user or ":" in user or any(ord(c) < 0x20 for c in user):
        return f"user name {shorten(user)} must be non-empty, without ':' or control characters"
    match = _BCRYPT.fullmatch(hashed)
    if match is None:
        return (f"{shorten(user)}: not a bcrypt hash ($2b$, the cost, $ and 53 characters, "
                "as `htpasswd -nbBC 10 USER PASSWORD` prints)")
    cost = int(match[1])
    if not MIN_BCRYPT_COST <= cost <= MAX_BCRYPT_COST:
        return (f"{shorten(user)}: bcrypt cost {cost} is outside "
                f"{MIN_BCRYPT_COST}-{MAX_BCRYPT_COST} (every uncached login waits for it)")
    return None


class ServerConfig(Strict):
    listen: str = "0.0.0.0:9469"  # port 0: any free port ($PORT overrides it)
    # name -> bcrypt hash, as in Prometheus' web config.
    basic_auth_users: dict[str, str] = Field(default_factory=dict)
    tls: ServerTLS | None = None
    # Connections open at once (lowered to 1/8 of the file-descriptor limit,
    # so probes keep the rest); past it the one idle longest is closed.
    max_connections: Annotated[int, Field(ge=1, le=65536)] = 128

    @field_validator("listen")
    @classmethod
    def _listen(cls, listen: str) -> str:
        _, sep, port = listen.rpartition(":")
        if (not sep or not port.isascii() or not port.isdigit() or len(port) > 5
                or not 0 <= int(port) < 65536):
            raise ValueError(f"listen must be host:port, got {shorten(listen)}")
        return listen

    @field_validator("basic_auth_users")
    @classmethod
    def _users(cls, users: dict[str, str]) -> dict[str, str]:
        problems = [p for user, hashed in users.items()
                    if (p := _check_user(user, hashed)) is not None]
        if problems:
            raise ValueError("; ".join(problems))
        return users


class Config(Strict):
    """A loaded, validated config. ``secrets`` lists values never to print."""

    global_: GlobalConfig = Field(default_factory=GlobalConfig, alias="global")
    server: ServerConfig = Field(default_factory=ServerConfig)
    # The kind's own model (the loader validated each through ProbeKinds).
    probes: tuple[SerializeAsAny[ProbeBase], ...] = ()
    # Failed runs looked up in Cloud Logging (docs/attribution.md); off when absent.
    attribution: AttributionConfig | None = None
    secrets: frozenset[str] = Field(default=frozenset(), exclude=True, repr=False)

    def probe(self, name: str) -> ProbeConfig:
        for probe in self.probes:
            if probe.name == name:
                return probe
        raise KeyError(name)
