"""`monitor validate` on expect checks: every bad regex, header name and JSON path is
reported with its YAML path and exit 3; a config using every key passes with 0."""

from __future__ import annotations

from pathlib import Path

from tests.integration.test_cli import monitor

INVALID = Path(__file__).parents[1] / "config" / "invalid"


async def test_validate_reports_every_bad_check_and_exits_3() -> None:
    """Each line of the table case's expected text is on stderr."""
    code, _, err = await monitor("validate", "-c", str(INVALID / "expect-checks.yaml"))
    assert code == 3
    expected = [line for line in (INVALID / "expect-checks.txt").read_text().splitlines() if line]
    assert len(expected) >= 15
    for line in expected:
        assert line in err


async def test_validate_accepts_every_key(tmp_path: Path) -> None:
    """Headers, absent headers, regex strings and lists, JSON scalars and regexes load."""
    path = tmp_path / "ok.yaml"
    path.write_text("""\
probes:
  - name: web
    kind: http
    url: https://example.com/health
    expect:
      headers: {X-App-Revision: '^backend-', Content-Type: json}
      headers_absent: [x-debug]
      body_regex: '"ok"'
      body_not_regex: [maintenance, degraded]
      json: {"$.status": ok, "$.n": 3, "$.up": true, "$.err": null, "$.v": {regex: '^1\\.'},
             '$["odd key"][0]': 1.5}
  - name: path
    kind: journey
    steps:
      - name: login
        http:
          url: https://example.com/login
          expect: {headers: {x-a: b}, json: {"$.status": ok}, body_regex: [ok]}
""")
    code, _, err = await monitor("validate", "-c", str(path))
    assert code == 0, err
