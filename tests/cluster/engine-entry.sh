#!/bin/sh
# Entry point of a Docker engine running inside a container (one Swarm node of
# `make test-cluster`). Not --privileged (refused on these machines): the container gets
# the capabilities dockerd needs and a private cgroup namespace, and this script mounts
# the cgroup controllers afresh, writable, before starting dockerd.
set -eu
if [ -e /sys/fs/cgroup/cgroup.controllers ]; then
    mount -o remount,rw /sys/fs/cgroup            # cgroup v2: one hierarchy
else
    for d in /sys/fs/cgroup/*/; do                  # cgroup v1: one mount per controller
        c=$(basename "$d")
        [ "$c" = unified ] && continue
        umount "$d" 2>/dev/null || true
        opts=$c
        [ "$c" = systemd ] && opts=none,name=systemd
        mount -t cgroup -o "$opts" cgroup "$d"
    done
fi
exec dockerd --host unix:///var/run/docker.sock "$@"
