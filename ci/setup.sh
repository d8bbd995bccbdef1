#!/usr/bin/env bash
# Create .venv (if needed) and install Segue with its development tools.
set -euo pipefail
cd "$(dirname "$0")/.."

# The web page tests (integration_test/web) drive Debian's headless Chromium
# through its chromedriver; they fail, never skip, without them. Installed here
# when missing (needs root, as in CI; elsewhere install them yourself).
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing chromium and chromium-driver"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
      chromium chromium-driver fonts-dejavu-core >/dev/null
  else
    echo "warning: chromium/chromedriver missing; integration_test/web will fail:" \
      "apt-get install -y chromium chromium-driver" >&2
  fi
fi
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.segue-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e ".[dev]"
  touch "$stamp"
fi

# The unmodified OMOTES SDK (client and Celery worker) that the OMOTES drop-in
# tests drive, in a venv of its own: it pins an older aio-pika than Segue, and
# as GPL-licensed code it is only ever a test peer, never part of Segue.
OMOTES_SDK=omotes-sdk-python==4.3.7
if [ ! -x .venv-omotes/bin/python ]; then
  "$PYTHON" -m venv .venv-omotes
fi
if [ ! -f .venv-omotes/.installed ] || [ "$(cat .venv-omotes/.installed)" != "$OMOTES_SDK" ]; then
  .venv-omotes/bin/python -m pip install --quiet "$OMOTES_SDK"
  echo "$OMOTES_SDK" > .venv-omotes/.installed
fi
