#!/usr/bin/env bash
# A stand-in for python:3.11-slim made from Debian's packages, for machines that cannot
# reach Docker Hub: Debian bookworm minbase with python3 (3.11), its venv module and CA
# certificates, without docs, man pages, locales or apt lists (~130 MB).
#
#   deploy/base-image.sh [TAG]          # default idn-base:bookworm; needs mmdebstrap, root
#
# Idempotent: does nothing when TAG exists. Other packages: BASE_PACKAGES=a,b (comma list;
# tests/cluster makes its Docker engines' image this way).
set -euo pipefail
tag=${1:-idn-base:bookworm}
suite=${DEBIAN_SUITE:-bookworm}
include=${BASE_PACKAGES:-python3,python3-venv,ca-certificates}
if docker image inspect "$tag" >/dev/null 2>&1; then
    echo "base image $tag: present"
    exit 0
fi
command -v mmdebstrap >/dev/null || { echo "error: mmdebstrap not found (apt-get install mmdebstrap)" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
start=$(date +%s)
mmdebstrap --quiet --variant=minbase --include="$include" \
    --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-exclude=/usr/share/info/*' \
    --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin' \
    "$suite" "$tmp/rootfs.tar" >"$tmp/mmdebstrap.log" 2>&1 \
    || { tail -n 30 "$tmp/mmdebstrap.log" >&2; echo "error: mmdebstrap failed (log above)" >&2; exit 1; }
docker import --change 'ENV LANG=C.UTF-8' --change 'CMD ["/bin/bash"]' \
    --message "Debian $suite minbase + $include (mmdebstrap)" "$tmp/rootfs.tar" "$tag" >/dev/null
echo "base image $tag: built from Debian $suite in $(( $(date +%s) - start )) s," \
     "$(docker image inspect -f '{{.Size}}' "$tag" | awk '{printf "%.0f MB", $1/1e6}')"
