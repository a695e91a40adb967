#!/usr/bin/env bash
# Debian's QGIS for the real-client test (tests/qgis): the one place that installs it, used by
# .ci/run and by the test's `qgis` fixture. Packages and options as in ../shared/QGIS.md:
#   apt-get update && DEBIAN_FRONTEND=noninteractive \
#     apt-get install -y --no-install-recommends python3-qgis qgis-providers qgis
#
# Usage: tests/qgis/install_qgis.sh [--check | --dry-run]
#   (none)     install when missing (needs root; ~70-100 s and 1.2 GB the first time)
#   --check    exit 0 when installed, 1 when not; change nothing
#   --dry-run  print the commands an install would run (as if QGIS were missing); change nothing
# Exit codes: 0 installed (or already present), 1 missing (--check), 2 not root, 3 apt-get failed.
set -uo pipefail

PACKAGES=(python3-qgis qgis-providers qgis)
# what the test runs: Debian's interpreter and the processing CLI binary (QGIS_PREFIX: /usr)
prefix=${QGIS_PREFIX:-/usr}
FILES=("$prefix/bin/python3" "$prefix/bin/qgis_process.bin")

mode=${1:-install}
case "$mode" in
  install | --check | --dry-run) ;;
  *) echo "usage: $0 [--check | --dry-run]" >&2; exit 64 ;;
esac

installed() {
  command -v dpkg >/dev/null 2>&1 && dpkg -s "${PACKAGES[@]}" >/dev/null 2>&1 || return 1
  local f
  for f in "${FILES[@]}"; do [ -x "$f" ] || return 1; done
}

run() {  # a command of the install, printed instead of run with --dry-run
  if [ "$mode" = --dry-run ]; then
    printf '%s\n' "$*"
  else
    "$@"
  fi
}

if [ "$mode" = --check ]; then
  installed
  exit $?
fi
if [ "$mode" = install ] && installed; then
  echo "QGIS is installed (${PACKAGES[*]})"
  exit 0
fi
if [ "$mode" = install ] && [ "$(id -u)" -ne 0 ]; then
  echo "QGIS is missing and installing it needs root: apt-get install ${PACKAGES[*]}" >&2
  exit 2
fi
run apt-get update -q || exit 3
run env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${PACKAGES[@]}" || exit 3
[ "$mode" = --dry-run ] || installed || { echo "apt-get finished but QGIS is still incomplete" >&2; exit 3; }
