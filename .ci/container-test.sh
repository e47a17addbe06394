#!/usr/bin/env bash
# `make container-test`: build the image with ../shared/container/build-image.sh (podman and a
# debootstrap'd look-alike of the Dockerfile's base image; needs root and apt, as CI has) and run
# tests/container/ against it: the README's container commands, for real.
#
# Where podman cannot run containers (no root, no ../shared, no container support in this
# machine's kernel), it says so in ONE loud line and exits 0, so the rest of CI goes on. A
# Dockerfile that does not build where podman works, or a failing test, exits non-zero.
#
# Environment: TELEWATCH_BUILD_IMAGE (the build script), TELEWATCH_IMAGE (the tag to build),
# CONTAINER_STATE (build-image.sh's state folder), PYTHON (the interpreter with pytest).
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD=${TELEWATCH_BUILD_IMAGE:-../shared/container/build-image.sh}
IMAGE=${TELEWATCH_IMAGE:-localhost/telewatch:container-test}
STATE=${CONTAINER_STATE:-/var/tmp/telewatch-container}
PY=${PYTHON:-.venv/bin/python}

not_here() {
  echo "!!!!!!!! CONTAINER TEST NOT RUN: $* -- the image was NOT built or tested !!!!!!!!"
  exit 0
}

[ -f "$BUILD" ] || not_here "no $BUILD (CI keeps ../shared beside the clone)"
[ "$(id -u)" = 0 ] || not_here "podman, apt-get and debootstrap need root"

BASE=$(awk 'toupper($1)=="FROM"{print $2; exit}' Dockerfile)
case "$BASE" in */*) ;; *) BASE=docker.io/library/$BASE ;; esac
export CONTAINERS_CONF=$STATE/containers.conf

# Whether podman can run a container here at all (the base image, once build-image.sh made it).
podman_runs() {
  command -v podman >/dev/null &&
    podman run --rm --pull=never --no-healthcheck "$BASE" true >/dev/null 2>&1
}

LOG=$(mktemp)
trap 'rm -f "$LOG"' EXIT
started=$(date +%s)
if ! bash "$BUILD" . "$IMAGE" >"$LOG" 2>&1; then
  if podman_runs; then
    cat "$LOG" >&2
    echo "container-test: the image does not build (see above)" >&2
    exit 1
  fi
  not_here "podman cannot build or run containers on this machine: $(tail -1 "$LOG")"
fi
podman_runs || not_here "podman built the image but cannot run containers on this machine"
echo "container-test: $IMAGE built in $(($(date +%s) - started)) s"

export TELEWATCH_IMAGE=$IMAGE TELEWATCH_BUILD_LOG=$STATE/build.log
export NO_PROXY="127.0.0.1,localhost${NO_PROXY:+,$NO_PROXY}"
# -s: the tests print their figures (image size, time to the first heartbeat) for benchmarks.md
"$PY" -m pytest -q -s -p no:cacheprovider tests/container
