#!/usr/bin/env bash
# The two host fixes that podman needs on these machines before any
# `podman run` works (see docs/TESTING.md).
# Idempotent: run it as often as you like (root, or sudo).
#
#  1. ulimits: crun fails with "setrlimit RLIMIT_NOFILE: Operation not
#     permitted" unless the container's limits fit the host's. We write a
#     containers.conf with default_ulimits; the harness points CONTAINERS_CONF
#     at it (the Molecule platforms set the same ulimits explicitly too).
#  2. cgroups: on a hybrid cgroup v1/v2 layout crun fails with "cgroups in
#     hybrid mode not supported" until the hugetlb controller is mounted on v1.
#
# Prints the path of the containers.conf it wrote.
set -euo pipefail
cd "$(dirname "$0")/.."
conf_dir=${LIFEBOAT_MOLECULE_DIR:-$PWD/build/molecule}
mkdir -p "$conf_dir"

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "podman-host-fixes: run as root (or install sudo)" >&2; exit 1; }
  SUDO="sudo"
fi

# 1. ulimits
conf=$conf_dir/containers.conf
want='[containers]
default_ulimits = [
  "nofile=20000:20000",
  "nproc=32768:32768",
]'
if [ ! -f "$conf" ] || [ "$(cat "$conf")" != "$want" ]; then
  printf '%s\n' "$want" > "$conf.tmp" && mv "$conf.tmp" "$conf"
fi

# 2. hybrid cgroups: mount hugetlb on v1 when the host has a v1 hierarchy and
# it is not mounted yet. Pure v2 hosts (cgroup2 on /sys/fs/cgroup) need nothing.
if [ "$(stat -f -c %T /sys/fs/cgroup)" != "cgroup2fs" ] && grep -q ' /sys/fs/cgroup/cpu ' /proc/mounts; then
  if ! grep -q ' /sys/fs/cgroup/hugetlb ' /proc/mounts; then
    if grep -qw hugetlb /proc/cgroups; then
      $SUDO mkdir -p /sys/fs/cgroup/hugetlb
      $SUDO mount -t cgroup -o hugetlb cgroup /sys/fs/cgroup/hugetlb
    fi
  fi
fi
echo "$conf"
