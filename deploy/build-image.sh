#!/usr/bin/env bash
# `make image`: build deploy/Dockerfile with --network=none, so the build needs nothing
# from any network and gives the same result on a machine without Docker Hub.
#
#   deploy/build-image.sh [IMAGE]      # default idn:latest
#
#   BASE=python:3.11-slim   the base image (any Debian-like image with python3.11 + venv);
#                           when it is neither present nor pullable (within PULL_TIMEOUT
#                           s), a local base is made from Debian's packages instead
#                           (deploy/base-image.sh -> idn-base:bookworm).
#
# Wheels come from `pip download` into deploy/wheels/ first (cp311, manylinux x86_64:
# what both bases run), so the build itself installs with --no-index.
set -euo pipefail
cd "$(dirname "$0")/.."
image=${1:-idn:latest}
base=${BASE:-python:3.11-slim}
local_base=${LOCAL_BASE:-idn-base:bookworm}
pip=${PIP:-.venv/bin/pip}
[ -x "$pip" ] || pip="python3 -m pip"
t0=$(date +%s)

# 1. wheels (skipped when requirements are unchanged since the last download)
req=deploy/wheels/requirements.txt
python3 - >"$req.new" <<'PY'
import tomllib
p = tomllib.load(open("pyproject.toml", "rb"))["project"]
print("\n".join([*p["dependencies"], *p["optional-dependencies"]["build"], "setuptools>=77", "wheel"]))
PY
if ! cmp -s "$req.new" "$req" || ! ls deploy/wheels/*.whl >/dev/null 2>&1; then
    rm -f deploy/wheels/*.whl
    platforms=()
    for p in manylinux1 manylinux2010 manylinux2014 manylinux_2_17 manylinux_2_24 manylinux_2_27 manylinux_2_28 \
             manylinux_2_31 manylinux_2_34 manylinux_2_36; do platforms+=(--platform "${p}_x86_64"); done
    $pip download --quiet --disable-pip-version-check --dest deploy/wheels --only-binary=:all: \
        --python-version 3.11 --implementation cp --abi cp311 "${platforms[@]}" -r "$req.new" 2>&1 \
        | { grep -v "is ignored: it is neither a file nor a directory" || true; }
    mv "$req.new" "$req"
else
    rm -f "$req.new"
fi
echo "wheels: $(ls deploy/wheels/*.whl | wc -l) in deploy/wheels ($(du -sh deploy/wheels | cut -f1))"

# 2. base image: present, else pulled, else made from Debian's packages
if docker image inspect "$base" >/dev/null 2>&1; then
    echo "base: $base (present)"
elif timeout "${PULL_TIMEOUT:-60}" docker pull --quiet "$base" >/dev/null 2>&1; then
    echo "base: $base (pulled)"
else
    echo "base: $base cannot be pulled; using $local_base made from Debian's packages"
    deploy/base-image.sh "$local_base"
    base=$local_base
fi

# 3. the image, offline
t1=$(date +%s)
docker build --network=none --build-arg BASE="$base" -f deploy/Dockerfile -t "$image" . >/tmp/idn-image-build.$$.log 2>&1 \
    || { tail -n 40 /tmp/idn-image-build.$$.log >&2; echo "error: docker build failed (log above)" >&2; exit 1; }
rm -f /tmp/idn-image-build.$$.log
size=$(docker image inspect -f '{{.Size}}' "$image")
echo "image: $image on $base, $(awk -v s="$size" 'BEGIN {printf "%.0f MB", s/1e6}'), built offline in" \
     "$(( $(date +%s) - t1 )) s ($(( $(date +%s) - t0 )) s with wheels and base)"
