"""`${name}` templates of journey steps: found at load time, filled in at run time.

The loader replaces `${ENV}` from the environment and leaves a journey's other
`${name}` for the run, where earlier steps' ``extract`` give them values;
`$$` is a literal `$` in both. Config validation uses :func:`variables` to
refuse a name no earlier step defines; the journey probe uses
:func:`render` and :func:`render_json` on each step. Nothing here imports
the rest of monitor.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import SecretStr

# `${name}` or `$$` (the loader left both for us in journeys).
TEMPLATE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def variables(value: Any) -> list[str]:
    """Every ``${name}`` in the strings of ``value`` (dicts, lists, SecretStr), in order."""
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if isinstance(value, str):
        return [m.group(1) for m in TEMPLATE.finditer(value) if m.group(1)]
    if isinstance(value, dict):
        return [name for k, v in value.items() for name in variables(k) + variables(v)]
    if isinstance(value, list | tuple):
        return [name for item in value for name in variables(item)]
    return []


def render(text: str, values: dict[str, str]) -> str:
    """Fill in ``${name}`` from ``values``; ``$$`` becomes ``$``.

    Raises KeyError naming the variable when it has no value (load-time
    checks make that a bug or an extract that yielded nothing).
    """

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        return "$" if name is None else values[name]

    return TEMPLATE.sub(substitute, text)


def render_json(value: Any, values: dict[str, str]) -> Any:
    """:func:`render` over every string (keys too) of a JSON value."""
    if isinstance(value, str):
        return render(value, values)
    if isinstance(value, dict):
        return {render(k, values): render_json(v, values) for k, v in value.items()}
    if isinstance(value, list):
        return [render_json(v, values) for v in value]
    return value
