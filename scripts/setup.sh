#!/usr/bin/env bash
# Create .venv and install ragmem with its test tools, offline-friendly.
# torch is installed first, from the pinned version, and kept as a constraint for every
# later install, so nothing pulls the multi-GB CUDA build as a side effect.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "ragmem needs Python 3.11 or newer; set PYTHON=/path/to/python3.11" >&2
    exit 1
fi
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
PIP=(.venv/bin/python -m pip --disable-pip-version-check -q)
# Some machines' pip.conf names index folders that do not exist; pip warns once per package.
quiet() { "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2); }
if ! .venv/bin/python -c 'import torch' 2>/dev/null; then
    echo "installing torch (pinned in constraints.txt)..." >&2
    quiet "${PIP[@]}" install -c constraints.txt torch
fi
if ! .venv/bin/python -c 'import rag_memory, pytest' 2>/dev/null || [ pyproject.toml -nt .venv/.ragmem-installed ]; then
    echo "installing ragmem and its dependencies..." >&2
    quiet "${PIP[@]}" install -c constraints.txt -e ".[dev,server,plot,multilingual]"
    touch .venv/.ragmem-installed
fi

# The browser test drives the distribution's headless Chromium through chromium-driver
# (Playwright's own browser download does not work offline). Installed here when missing.
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "installing chromium and chromium-driver (for the browser test)..." >&2
        install_browser() {
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
                chromium chromium-driver fonts-wqy-zenhei >/dev/null
        }
        # Package lists may be missing or stale on a fresh image: update them only if needed.
        if ! { install_browser 2>/dev/null || { apt-get update -qq && install_browser; }; }; then
            echo "WARNING: apt-get could not install chromium/chromium-driver: the web page's browser test" \
                 "(tests/server/test_page_browser.py) will be SKIPPED." >&2
        fi
    else
        echo "WARNING: chromium and chromium-driver are missing and cannot be installed here (needs root and" \
             "apt-get): the web page's browser test (tests/server/test_page_browser.py) will be SKIPPED." \
             "Install them with: sudo apt-get install chromium chromium-driver" >&2
    fi
fi
