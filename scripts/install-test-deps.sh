#!/usr/bin/env bash
# Install what the tests need on a fresh Debian machine (idempotent).
set -euo pipefail
cd "$(dirname "$0")/.."

python -m pip install --quiet --disable-pip-version-check -e ".[test]"
# The kernelspec the tests launch (ipykernel's own, for this interpreter).
python -m ipykernel install --sys-prefix --name python3 >/dev/null

if ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    else
        sudo apt-get update -qq
        sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    fi
fi

# PostgreSQL server binaries for the hub-database tests (tests/hub start a private cluster).
if [ ! -x /usr/lib/postgresql/15/bin/initdb ]; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-15 >/dev/null
    else
        sudo apt-get update -qq
        sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-15 >/dev/null
    fi
fi

if [ -f tests/node/package.json ]; then
    (cd tests/node && npm ci --no-audit --no-fund --silent)
fi
# The web UI's build tools and its unit-test DOM (jsdom); dist/ itself is committed.
(cd platform/ui && npm ci --no-audit --no-fund --silent)
