#!/usr/bin/env bash
# Builds a stand-in for python:3.11-slim-bookworm from Debian packages, because CI reaches no
# image registry: debootstrap's minimal Debian 12 with its Python 3.11, the host's extra CA
# certificates (so pip inside `docker build` trusts the same TLS as the host), and a venv at
# /opt/python first on PATH, where `pip install` lands as it would in the official image.
# Needs root and DOCKER_HOST pointing at a running dockerd.
# Usage: deploy/ci/base-image.sh TAG [DOCKER]
set -euo pipefail
tag=${1:?usage: base-image.sh TAG [DOCKER]}
docker=${2:-docker}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root="$work/rootfs"

debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
  bookworm "$root" http://deb.debian.org/debian >"$work/debootstrap.log" 2>&1 || {
  tail -n 30 "$work/debootstrap.log" >&2
  exit 1
}
if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
  cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/"
fi
# (its rehash warns about the bundle file itself; only a failure matters)
chroot "$root" update-ca-certificates >"$work/ca.log" 2>&1 || { cat "$work/ca.log" >&2; exit 1; }
chroot "$root" python3 -m venv /opt/python
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb

tar -C "$root" -c . | "$docker" import \
  --change 'ENV PATH=/opt/python/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt' \
  --change 'CMD ["python3"]' \
  - "$tag" >/dev/null
echo "base image $tag: $("$docker" image inspect --format '{{.Size}}' "$tag") bytes" >&2
