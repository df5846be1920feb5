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
    quiet "${PIP[@]}" install -c constraints.txt -e ".[dev]"
    touch .venv/.ragmem-installed
fi
