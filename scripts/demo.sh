#!/usr/bin/env bash
# Sets up the Manager and runs it on an embedded demo: the standalone server on 127.0.0.1 over a
# demo ComfyUI tree with a local channel, offline mode, no ComfyUI and no network needed.
# Open the printed URL for the panel; Ctrl+C stops it. Extra arguments go to `cm-cli.py serve`.
source "$(dirname "$0")/_venv.sh"
need_tool git git
.venv/bin/python -m pip install -q --disable-pip-version-check -e .
exec .venv/bin/python cm-cli.py serve --demo --dir demo --port "${PORT:-8190}" "$@"
