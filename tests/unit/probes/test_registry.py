"""monitor/probes/__init__.py: KINDS is the one list of kinds; the config's
union of models (PROBE_KINDS) is derived from it."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from monitor.config import ConfigError, ProbeKinds, parse_config
from monitor.config.http import HttpProbeConfig
from monitor.config.models import kind_of
from monitor.config.tcp import TcpProbeConfig
from monitor.probes import KINDS, PROBE_KINDS
from monitor.probes.base import Probe
from monitor.probes.http import HttpProbe


def test_the_config_union_is_the_models_of_kinds() -> None:
    """Each probe class is generic over its kind's model; PROBE_KINDS holds exactly those."""
    assert PROBE_KINDS.names == tuple(KINDS)
    assert PROBE_KINDS.models == tuple(probe.config_model() for probe in KINDS.values())
    assert {kind: kind_of(probe.config_model()) for kind, probe in KINDS.items()} == {
        kind: kind for kind in KINDS}
    assert HttpProbe.config_model() is HttpProbeConfig


def test_a_probe_class_not_generic_over_a_model_is_a_type_error() -> None:
    class Untyped(Probe):  # type: ignore[type-arg]
        pass

    with pytest.raises(TypeError, match="Untyped does not subclass Probe"):
        Untyped.config_model()


def test_a_subclass_of_a_kind_keeps_its_model() -> None:
    class Tuned(HttpProbe):
        pass

    assert Tuned.config_model() is HttpProbeConfig


def test_only_the_kinds_handed_to_the_loader_are_accepted() -> None:
    """The loader knows no kind of its own: a config naming another is refused
    with the kinds it was given."""
    text = "probes: [{name: web, kind: http, url: 'http://127.0.0.1:1/'}]"
    assert parse_config(text, {}, kinds=PROBE_KINDS).probes[0].kind == "http"
    with pytest.raises(ConfigError) as error:
        parse_config(text, {}, kinds=ProbeKinds([TcpProbeConfig]))
    assert error.value.problems == [
        "probes[0] (probe 'web'): unknown kind 'http' (expected one of 'tcp')"]
    missing = "probes: [{name: web, kind: tcp}]"
    with pytest.raises(ConfigError) as error:
        parse_config(missing, {}, kinds=ProbeKinds([TcpProbeConfig]))
    assert error.value.problems[0].startswith("probes[0].target (probe 'web'): ")
    two = ProbeKinds([TcpProbeConfig, HttpProbeConfig])
    with pytest.raises(ValidationError, match="'tcp', 'http'"):
        two.validate({"name": "x", "kind": "dns"}, {})


def test_a_kind_named_twice_or_no_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="named twice"):
        ProbeKinds([TcpProbeConfig, TcpProbeConfig])
    with pytest.raises(ValueError, match="no probe kinds"):
        ProbeKinds([])


def test_a_phase_metric_without_the_phase_label_is_refused_at_class_definition() -> None:
    from monitor.metricspecs import SQL_CONNECT

    with pytest.raises(TypeError, match="must have the labels probe, kind, phase"):
        class Wrong(HttpProbe):
            phase_metric = SQL_CONNECT  # a histogram, but without `phase`
