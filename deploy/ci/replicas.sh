#!/usr/bin/env bash
# The Docker deployment, for real: lint and build the image (on a locally made base image, since
# CI reaches no registry), then run deploy/ci/scenario.py: two s3gate containers behind nginx
# with PostgreSQL and SeaweedFS, one SIGKILLed and one drained mid-traffic, and every file
# checked against the ledger and the bucket. Needs root (dockerd, debootstrap) and the
# PostgreSQL server the tests use (S3GATE_TEST_POSTGRES_URL).
#
#   deploy/ci/replicas.sh          (.ci/run calls it after the test suite)
#
# dockerd runs privately for this script (its socket and state in a temp folder) and is
# stopped at the end. Images are kept in S3GATE_CI_DOCKER_ROOT (default
# /var/lib/s3gate-ci/docker) so a second run reuses the base image and the build cache; one run
# at a time uses it.
set -euo pipefail
cd "$(dirname "$0")/../.."

BASE_IMAGE=local/python:3.11-slim-bookworm
IMAGE=local/s3gate:ci
DATA_ROOT=${S3GATE_CI_DOCKER_ROOT:-/var/lib/s3gate-ci/docker}
started=$(date +%s)

say() { echo "replicas: $*" >&2; }
elapsed() { echo "$(($(date +%s) - $1)) s"; }

# --- what it needs (a fresh CI machine has none of it) ----------------------------------------
missing=()
[ -x /usr/sbin/dockerd ] || missing+=(docker.io)
[ -x /usr/sbin/nginx ] || missing+=(nginx)
[ -x /usr/sbin/debootstrap ] || missing+=(debootstrap)
if [ "${#missing[@]}" -gt 0 ]; then
  say "installing ${missing[*]} from Debian"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Debian's client, not another docker that may be earlier on PATH.
DOCKER=/usr/bin/docker
[ -x "$DOCKER" ] || DOCKER=$(command -v docker)

RUN=$(mktemp -d /tmp/s3gate-replicas.XXXXXX)
chmod 711 "$RUN"  # nginx's workers (nobody) reach their temp folders inside
DOCKERD_PID=""
cleanup() {
  local status=$?
  if [ -n "$DOCKERD_PID" ] && kill -0 "$DOCKERD_PID" 2>/dev/null; then
    kill -TERM "$DOCKERD_PID"  # stops its containers, then exits
    for _ in $(seq 1 60); do kill -0 "$DOCKERD_PID" 2>/dev/null || break; sleep 0.5; done
    kill -0 "$DOCKERD_PID" 2>/dev/null && kill -KILL "$DOCKERD_PID"
    wait "$DOCKERD_PID" 2>/dev/null || true
  fi
  if [ "$status" -ne 0 ] && [ -d "$RUN/scenario" ]; then
    mkdir -p test-artifacts/replicas  # nginx's logs, the replicas' logs
    cp "$RUN/scenario/"*.log test-artifacts/replicas/ 2>/dev/null || true
    say "logs kept in $(pwd)/test-artifacts/replicas"
  fi
  if grep -qs " $RUN/exec/netns/default " /proc/mounts; then
    umount "$RUN/exec/netns/default" || true
  fi
  rm -rf "$RUN"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- a private dockerd ---------------------------------------------------------------------------
mkdir -p "$DATA_ROOT"
exec 9>"$DATA_ROOT.lock"
flock -w 1200 9 || { say "another run holds $DATA_ROOT"; exit 1; }
t=$(date +%s)
dockerd --bridge=none --iptables=false --ip-masq=false --ip-forward=false \
  --data-root "$DATA_ROOT" --exec-root "$RUN/exec" --pidfile "$RUN/dockerd.pid" \
  -H "unix://$RUN/docker.sock" >"$RUN/dockerd.log" 2>&1 9>&- &
DOCKERD_PID=$!
export DOCKER_HOST="unix://$RUN/docker.sock"
for _ in $(seq 1 60); do "$DOCKER" version >/dev/null 2>&1 && break; sleep 0.5; done
"$DOCKER" version >/dev/null 2>&1 || { tail -n 30 "$RUN/dockerd.log" >&2; exit 1; }
say "dockerd up in $(elapsed "$t") (data root $DATA_ROOT)"

# --- images ------------------------------------------------------------------------------------------
t=$(date +%s)
if "$DOCKER" image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
  say "base image $BASE_IMAGE: already built"
else
  bash deploy/ci/base-image.sh "$BASE_IMAGE" "$DOCKER"
  say "base image $BASE_IMAGE built with debootstrap in $(elapsed "$t")"
fi

.venv/bin/hadolint Dockerfile
say "hadolint: Dockerfile clean"
t=$(date +%s)
"$DOCKER" build --quiet --network=host --build-arg "BASE_IMAGE=$BASE_IMAGE" -t "$IMAGE" . >/dev/null
"$DOCKER" image prune --force >/dev/null  # earlier builds' layers, no longer tagged
size=$("$DOCKER" image inspect --format '{{.Size}}' "$IMAGE")
say "image $IMAGE built in $(elapsed "$t") ($((size / 1000000)) MB)"

# --- the scenario ------------------------------------------------------------------------------------
t=$(date +%s)
.venv/bin/python deploy/ci/scenario.py --image "$IMAGE" --docker "$DOCKER" --run-dir "$RUN/scenario"
say "scenario took $(elapsed "$t"); all in $(elapsed "$started")"
