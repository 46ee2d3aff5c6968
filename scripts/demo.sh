#!/usr/bin/env bash
# Sets up the Manager and runs it on an embedded demo: a ComfyUI tree with a local channel,
# offline mode, no ComfyUI and no network needed.
source "$(dirname "$0")/_venv.sh"
need_tool git git
.venv/bin/python -m pip install -q --disable-pip-version-check -e .
exec .venv/bin/python cm-cli.py demo --dir demo "$@"
