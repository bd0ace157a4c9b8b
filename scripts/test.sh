#!/usr/bin/env bash
# The test command (README, .ci/run): installs what the tests need, then runs them all.
#   - Debian packages, when missing: PostgreSQL, MariaDB, haproxy, nginx, tinyproxy,
#     Prometheus, Alertmanager, Chromium (the tests start their own processes on 127.0.0.1);
#   - this package with its test extras (and the dashboard generator, whose output
#     the tests compare with the committed JSON);
# then ruff, mypy, the import rules (lint-imports, docs/architecture.md) and pytest.
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
have() { command -v "$1" >/dev/null 2>&1 || [ -x "$1" ]; }
have /usr/lib/postgresql/15/bin/postgres || missing+=(postgresql)
have mariadbd || have mysqld || missing+=(mariadb-server)
have haproxy || missing+=(haproxy)
have nginx || have /usr/sbin/nginx || missing+=(nginx-light)
have tinyproxy || have /usr/bin/tinyproxy || missing+=(tinyproxy)
have prometheus || missing+=(prometheus)
have prometheus-alertmanager || missing+=(prometheus-alertmanager)
have chromium || missing+=(chromium)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing Debian packages: ${missing[*]}"
  if [ "$(id -u)" -eq 0 ]; then sudo=""; else sudo="sudo"; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

python3 -m pip install -q --disable-pip-version-check -e ".[test,demo,dashboards]"
# Tests that need a server or binary fail, rather than skip, when it is missing here.
export MONITOR_REQUIRE_EXTERNAL=1 MONITOR_REQUIRE_DATABASES=1
python3 -m ruff check .
python3 -m mypy
# lint-imports, through python3 so that it reads the same environment
python3 -c 'import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())'
python3 -m pytest "$@"
