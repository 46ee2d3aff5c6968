#!/usr/bin/env bash
# Sets up everything the test suite needs on a fresh machine, then runs the whole suite.
source "$(dirname "$0")/_venv.sh"
need_tool git git
need_tool chromium chromium
need_tool strace strace        # the real-host tier counts ComfyUI's connect() calls with strace -f
need_tool ip iproute2          # ... inside a network namespace with only loopback
need_tool nginx nginx          # the fleet mirror is served by a real nginx in its tests
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'
# The real-host tier's environments (real ComfyUI 0.8.0 / 0.3.64, the packaged manager 4.3): built
# once, cached outside the clone keyed by their inputs (tests/support/realhost_env.py). When this
# fails the tier does not run and the run's last line says so.
(cd tests && ../.venv/bin/python -m support.realhost_env build) \
  || echo "warning: the real-host environments could not be built; the real-host tier will not run" >&2
# Third-party code must not reach the internet: the suite runs in a network namespace that has
# only loopback (as root; elsewhere the real-host tier reports that it did not run).
if [ "$(id -u)" = 0 ] && unshare -n true 2>/dev/null; then
  exec unshare -n sh -c 'ip link set lo up && exec "$@"' sh .venv/bin/python -m pytest "$@"
fi
echo "warning: cannot create a network namespace here; the real-host tier will not run" >&2
exec .venv/bin/python -m pytest "$@"
