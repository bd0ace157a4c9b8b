"""YAML -> Config: interpolation, validation, every problem at once.

Nothing in a config file can crash the loader or hang it: the file and its
values are capped in size, YAML aliases, nesting and duplicate keys are
checked before anything is built (monitor.config.yamlload), every field's
type is checked before it is used, and an exception that still escapes is
reported as a problem (a bug of ours, named as such), never a traceback.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, SecretStr, ValidationError

from monitor.config.common import query_values
from monitor.config.models import Config, GlobalConfig, ProbeKinds, ServerConfig
from monitor.config.tracing import AttributionConfig
from monitor.config.yamlload import YamlLimit, load_yaml
from monitor.templates import TEMPLATE

# A config larger than this is a mistake (or /dev/zero); fleets of a few
# thousand probes stay far below it.
MAX_CONFIG_BYTES = 4 * 1024 * 1024
# One problem line quotes input values; never pages of it.
MAX_PROBLEM_CHARS = 400

# Environment variables whose values are secrets wherever they are used.
_SECRET_NAME = re.compile(r"PASS|TOKEN|SECRET|KEY|CRED|AUTH", re.IGNORECASE)
# Kinds whose `${name}` may also name a variable set at run time.
_RUNTIME_VARIABLE_KINDS = frozenset({"journey"})


class ConfigError(Exception):
    """A config that cannot be used; ``problems`` holds one sentence each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def load_config(path: str | Path, environ: Mapping[str, str] | None = None, *,
                kinds: ProbeKinds) -> Config:
    """Read, interpolate and validate ``path``; raise ConfigError listing every problem.

    ``kinds``: the probe kinds it may use (``monitor.probes.PROBE_KINDS``).
    """
    path = Path(path)
    try:
        if path.is_dir():
            raise ConfigError([f"{path}: cannot read config: is a directory"])
        with path.open("rb") as file:  # not only regular files: -c /dev/stdin works
            data = file.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read config: {exc.strerror or exc}"]) from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError([f"{path}: larger than {MAX_CONFIG_BYTES // (1024 * 1024)} MiB"])
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError([f"{path}: not UTF-8 text (byte {exc.start})"]) from None
    return parse_config(text, environ if environ is not None else os.environ, source=str(path),
                        kinds=kinds)


def parse_config(text: str, environ: Mapping[str, str], source: str = "<config>", *,
                 kinds: ProbeKinds) -> Config:
    """Interpolate and validate YAML ``text``; raise ConfigError listing every problem."""
    try:
        return _parse(text, environ, source, kinds)
    except ConfigError as error:
        raise ConfigError([_cut(p) for p in error.problems]) from None
    except RecursionError:
        raise ConfigError([f"{source}: nested too deeply to load"]) from None
    except Exception as exc:  # a bug of ours: say so, but as a config problem (exit 3)
        raise ConfigError([f"{source}: cannot load the config (internal error, please "
                           f"report it: {type(exc).__name__}: {_cut(str(exc), 200)})"]) from None


def _cut(problem: str, limit: int = MAX_PROBLEM_CHARS) -> str:
    return problem if len(problem) <= limit else problem[: limit - 15] + "... [truncated]"


def _parse(text: str, environ: Mapping[str, str], source: str, kinds: ProbeKinds) -> Config:
    if len(text) > MAX_CONFIG_BYTES:
        raise ConfigError([f"{source}: larger than {MAX_CONFIG_BYTES // (1024 * 1024)} MiB"])
    try:
        raw = load_yaml(text)
    except YamlLimit as exc:
        where = f"{source}:{exc.where}" if exc.where else source
        raise ConfigError([f"{where}: refused: {exc.problem}"]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([f"{where}: invalid YAML: {problem}"]) from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError([f"{source}: the top level must be a mapping with probes:"])

    problems: list[str] = []
    secrets: set[str] = set()
    for key in raw:
        if key not in ("global", "server", "probes", "attribution"):
            problems.append(f"{key}: is not a known section "
                            "(global, server, probes, attribution)")

    raw = _interpolate(raw, "", environ, secrets, problems, runtime_ok=False)

    global_config = _validate(GlobalConfig, _section(raw, "global"), "global", problems)
    server = _validate(ServerConfig, _section(raw, "server"), "server", problems)
    probes = _validate_probes(raw.get("probes"), global_config or GlobalConfig(), problems,
                              kinds)
    attribution = (None if raw.get("attribution") is None else
                   _validate(AttributionConfig, raw["attribution"], "attribution", problems))

    if problems:
        raise ConfigError(_named(_hide(problems, secrets), raw.get("probes")))
    if global_config is None or server is None:  # problems above said why
        raise ConfigError(problems or ["global/server: invalid"])
    for probe in probes:
        secrets |= _secret_values(probe)
    secrets |= {v.get_secret_value() for v in _walk_secrets(server)}
    return Config.model_validate({
        "global": global_config,
        "server": server,
        "probes": probes,
        "attribution": attribution,
        "secrets": frozenset(s for s in secrets if s),
    })


def _section(raw: dict[Any, Any], name: str) -> Any:
    """A section's mapping; an empty one (``server:``) counts as absent."""
    value = raw.get(name)
    return {} if value is None else value


def _hide(problems: list[str], secrets: set[str]) -> list[str]:
    """Problems quote input values: never a secret's (interpolated) value."""
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        problems = [p.replace(secret, "<redacted>") for p in problems]
    return problems


def _named(problems: list[str], probes: Any) -> list[str]:
    """Add the probe's name to interpolation problems, as validation does."""
    named = []
    for problem in problems:
        match = re.match(r"probes\[(\d+)\]([^ :(]*): ", problem)
        if match and isinstance(probes, list) and int(match[1]) < len(probes):
            item = probes[int(match[1])]
            name = item.get("name") if isinstance(item, dict) else None
            if isinstance(name, str):
                head = match.group(0)[:-2]
                problem = f"{head} (probe {name!r}): {problem[len(match.group(0)):]}"
        named.append(problem)
    return named


def _validate_probes(raw: Any, global_config: GlobalConfig, problems: list[str],
                     kinds: ProbeKinds) -> list[Any]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        problems.append("probes: must be a list of probes")
        return []
    probes: list[Any] = []
    seen: dict[str, int] = {}
    for index, item in enumerate(raw):
        where = f"probes[{index}]"
        name = item.get("name") if isinstance(item, dict) else None
        label = f" (probe {name!r})" if isinstance(name, str) else ""
        if not isinstance(item, dict):
            problems.append(f"{where}: must be a mapping with name: and kind:")
            continue
        if isinstance(name, str):
            if name in seen:
                problems.append(
                    f"{where}.name{label}: duplicate name, already used by probes[{seen[name]}]"
                )
            seen.setdefault(name, index)
        try:
            probe = kinds.validate(item, context={"global": global_config})
        except ValidationError as exc:
            problems.extend(_format_errors(exc, where, label, tagged=True))
            continue
        for field, sentence in probe.problems():
            problems.append(f"{where}.{field}{label}: {sentence}")
        probes.append(probe)
    return probes


def _validate(model: type[BaseModel], raw: Any, where: str, problems: list[str]) -> Any:
    if not isinstance(raw, dict):
        problems.append(f"{where}: must be a mapping")
        return None
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        problems.extend(_format_errors(exc, where, "", tagged=False))
        return None


def _format_errors(exc: ValidationError, where: str, label: str, *, tagged: bool) -> list[str]:
    lines = []
    for error in exc.errors(include_url=False):
        loc = list(error["loc"])
        if tagged and loc and error["type"] not in ("union_tag_invalid", "union_tag_not_found"):
            loc = loc[1:]  # pydantic puts the discriminator value first
        if loc and loc[-1] == "[key]":  # pydantic's mark of a bad mapping key
            loc = loc[:-1]
        path = where + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc)
        lines.append(f"{path}{label}: {_sentence(error)}")
    return lines


def _sentence(error: Any) -> str:
    kind = error["type"]
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        return "is not a known field"
    if kind == "union_tag_not_found":
        return "kind is required"
    if kind == "union_tag_invalid":
        ctx = error.get("ctx", {})
        return f"unknown kind {ctx.get('tag')!r} (expected one of {ctx.get('expected_tags')})"
    ctx = error.get("ctx", {})
    bounds = {"greater_than": "more than", "greater_than_equal": "at least",
              "less_than": "less than", "less_than_equal": "at most"}
    if kind in bounds:
        limit = next(iter(ctx.values()), "?")
        if isinstance(limit, float) and limit.is_integer():
            limit = int(limit)
        return f"must be {bounds[kind]} {limit}, got {error['input']!r}"
    if kind == "string_pattern_mismatch" and error["loc"][-1] == "name":
        return "must be lower-case letters, digits, '-' or '_' (it becomes the probe label)"
    if kind == "pattern_regex":
        try:
            re.compile(error["input"])
        except (re.error, TypeError) as exc:
            return f"invalid regular expression {error['input']!r}: {exc}"
    if kind in ("too_long", "too_short"):
        return str(error["msg"]).replace("List should", "must").replace("String should", "must")
    message = str(error["msg"])
    return message.removeprefix("Value error, ").removeprefix("Assertion failed, ")


def _interpolate(
    value: Any, path: str, environ: Mapping[str, str], secrets: set[str],
    problems: list[str], *, runtime_ok: bool,
) -> Any:
    """Replace ``${VAR}`` from the environment in every string; ``$$`` is a literal ``$``.

    In kinds with run-time variables (journey) an unknown name is left for
    the probe to resolve (it checks it against its own variables).
    """
    if isinstance(value, dict):
        kind = value.get("kind")
        if path.startswith("probes[") and isinstance(kind, str) and kind in _RUNTIME_VARIABLE_KINDS:
            runtime_ok = True
        return {
            k: _interpolate(v, f"{path}.{k}" if path else str(k), environ, secrets, problems,
                            runtime_ok=runtime_ok)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [
            _interpolate(v, f"{path}[{i}]", environ, secrets, problems, runtime_ok=runtime_ok)
            for i, v in enumerate(value)
        ]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        if name is None:
            return "$$" if runtime_ok else "$"
        if name in environ:
            if _SECRET_NAME.search(name):
                secrets.add(environ[name])
            # Journeys expand `$$` and `${var}` again at run time: escape the value.
            return environ[name].replace("$", "$$") if runtime_ok else environ[name]
        if not runtime_ok:
            problems.append(f"{path}: environment variable {name} is not set")
        return match.group(0)

    return TEMPLATE.sub(substitute, value)  # the syntax journeys fill in at run time


def _walk_secrets(value: Any) -> list[SecretStr]:
    found: list[SecretStr] = []
    if isinstance(value, SecretStr):
        found.append(value)
    elif isinstance(value, BaseModel):
        for field in type(value).model_fields:
            found += _walk_secrets(getattr(value, field))
    elif isinstance(value, dict):
        for item in value.values():
            found += _walk_secrets(item)
    elif isinstance(value, list | tuple):
        for item in value:
            found += _walk_secrets(item)
    return found


def _secret_values(probe: Any) -> set[str]:
    values = {s.get_secret_value() for s in _walk_secrets(probe)}
    # A header value is only secret in part ("Bearer abc"): keep the token too.
    values |= {part for v in values for part in v.split() if len(part) >= 8}
    # Query values are masked where URLs are shown; by value too, wherever
    # else they turn up (an error quoting the URL, a body echoing it).
    public = getattr(probe, "public_query", ())
    for url in _walk_urls(probe):
        values |= {v for v in query_values(url, public) if "${" not in v}
    return values


def _walk_urls(value: Any) -> list[str]:
    """Every ``url`` field of a probe config (journey steps included)."""
    if isinstance(value, BaseModel):
        found: list[str] = []
        for field in type(value).model_fields:
            item = getattr(value, field)
            if field == "url" and isinstance(item, str):
                found.append(item)
            elif isinstance(item, BaseModel | tuple | list):
                found += _walk_urls(item)
        return found
    if isinstance(value, list | tuple):
        return [url for item in value for url in _walk_urls(item)]
    return []
