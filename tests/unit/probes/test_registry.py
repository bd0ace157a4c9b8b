"""monitor/probes/__init__.py: KINDS and the config union name the same kinds, model by model."""

from __future__ import annotations

import typing

from monitor.config.models import ProbeConfig
from monitor.probes import KINDS
from monitor.probes.base import Probe


def config_models() -> dict[str, type]:
    """kind -> config model, read from the discriminated union of monitor/config/models.py."""
    union = typing.get_args(ProbeConfig)[0]
    return {typing.get_args(model.model_fields["kind"].annotation)[0]: model
            for model in typing.get_args(union)}


def probe_model(probe: type[Probe[typing.Any]]) -> type:
    """The config model a probe class is generic over (``Probe[HttpProbeConfig]``)."""
    for base in getattr(probe, "__orig_bases__", ()):
        if typing.get_origin(base) is Probe:
            model: type = typing.get_args(base)[0]
            return model
    raise AssertionError(f"{probe.__name__} does not subclass Probe[<config model>]")


def test_every_config_kind_has_a_probe_and_every_probe_a_config_kind() -> None:
    """One line in the union and one in KINDS per kind: neither list can miss one."""
    assert set(config_models()) == set(KINDS)


def test_each_probe_is_generic_over_its_kinds_config_model() -> None:
    """KINDS['http'] is a Probe[HttpProbeConfig], and so on for every kind."""
    models = config_models()
    assert {kind: probe_model(probe) for kind, probe in KINDS.items()} == models
