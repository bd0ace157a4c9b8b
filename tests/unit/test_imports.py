"""The import rules of docs/architecture.md, as import-linter contracts (pyproject.toml).

`lint-imports` runs them in scripts/test.sh; these tests run them on copies
of the package, to show that the check fails on a violating import and that
it holds once the transport layer (monitor/net) exists.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT = ("import sys; from importlinter.cli import lint_imports_command; "
        "sys.exit(lint_imports_command())")


def lint(tree: Path) -> subprocess.CompletedProcess[str]:
    """lint-imports on the package under ``tree`` (its own copy, not the installed one)."""
    env = {**os.environ, "PYTHONPATH": str(tree), "NO_COLOR": "1"}
    return subprocess.run([sys.executable, "-c", LINT], cwd=tree, env=env, capture_output=True,
                          text=True, timeout=120, check=False)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A copy of the package and of pyproject.toml (where the contracts live)."""
    shutil.copytree(ROOT / "monitor", tmp_path / "monitor",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    return tmp_path


def add_import(module: Path, line: str) -> None:
    text = module.read_text(encoding="utf-8")
    # After the docstring and `from __future__`, where an import goes.
    anchor = "from __future__ import annotations\n"
    assert anchor in text
    module.write_text(text.replace(anchor, anchor + line + "\n", 1), encoding="utf-8")


def test_the_tree_keeps_every_contract(tree: Path) -> None:
    """The code as it is keeps the rules."""
    done = lint(tree)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


@pytest.mark.parametrize(("module", "line", "contract"), [
    pytest.param("probes/http.py", "import monitor.recorder", "Layers",
                 id="probe-imports-recorder"),
    pytest.param("probes/tcp.py", "import monitor.metrics", "never touch metrics",
                 id="probe-imports-metrics"),
    pytest.param("config/types.py", "import monitor.probes.base", "Layers",
                 id="config-imports-probes"),
    pytest.param("config/common.py", "import monitor.redact", "Config is data",
                 id="config-imports-redact"),
    pytest.param("metrics.py", "import monitor.config", "leaves", id="metrics-imports-config"),
    pytest.param("metricspecs.py", "import monitor.probes.base", "leaves",
                 id="metricspecs-import-probes"),
    pytest.param("config/models.py", "import monitor.probes", "Layers",
                 id="config-imports-the-kinds-registry"),
    pytest.param("daemon.py", "import monitor.check", "Layers", id="daemon-imports-check"),
    pytest.param("runner.py", "import monitor.cli", "Layers", id="runner-imports-cli"),
    pytest.param("gcp/tokens.py", "import monitor.probes.http", "Layers",
                 id="tokens-import-a-kind"),
    pytest.param("net/fetch.py", "import monitor.gcp.tokens", "Layers",
                 id="transport-imports-tokens"),
    pytest.param("net/fetch.py", "import monitor.metrics", "never touch metrics",
                 id="transport-imports-metrics"),
])
def test_a_violating_import_fails_the_check(tree: Path, module: str, line: str,
                                            contract: str) -> None:
    """One import against the rules, and lint-imports exits non-zero naming the contract."""
    add_import(tree / "monitor" / module, line)
    done = lint(tree)
    assert done.returncode != 0
    broken = done.stdout.split("Broken contracts")[-1]
    assert contract in broken, done.stdout
    imported = line.split()[-1]
    assert imported in broken


def test_the_transport_layer_knows_no_kind(tree: Path) -> None:
    """monitor/net sits between the probes and config: a transport module that imports a
    kind breaks the rules (the failure types of probes/base are allowed)."""
    connect = tree / "monitor" / "net" / "connect.py"
    assert "monitor.probes.base" in connect.read_text(encoding="utf-8")
    add_import(connect, "import monitor.probes.tcp")
    done = lint(tree)
    assert done.returncode != 0
    assert "monitor.net.connect -> monitor.probes.tcp" in done.stdout
