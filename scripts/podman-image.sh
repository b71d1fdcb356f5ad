#!/usr/bin/env bash
# Builds (once) the Debian bookworm systemd image the Molecule scenarios boot,
# without any image registry: debootstrap a rootfs, tar it, `podman import`.
# The image and its rootfs tarball are cached, keyed by the package list (and
# this script's IMAGE_REV), so a second run costs nothing and a changed list
# builds a new image. Prints the image name.
#
#   scripts/podman-image.sh            build if missing, print the name
#   scripts/podman-image.sh --name     print the name only
#
# Environment: LIFEBOAT_IMAGE_CACHE (default /var/cache/lifeboat-molecule),
# LIFEBOAT_DEBIAN_MIRROR (default http://deb.debian.org/debian).
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE_REV=1
# Everything the scenarios' hosts need, installed at image build time so that
# no scenario installs Debian packages: systemd as PID 1, Python for Ansible
# and the agent's venv, python3-apt for ansible.builtin.package, PostgreSQL
# (database hosts, and the verifier's scratch server), zstd and age for
# restoring by hand with standard tools.
PACKAGES=(systemd systemd-sysv dbus python3 python3-venv python3-apt sudo ca-certificates
          procps postgresql zstd age)
suite=bookworm
mirror=${LIFEBOAT_DEBIAN_MIRROR:-http://deb.debian.org/debian}
cache=${LIFEBOAT_IMAGE_CACHE:-/var/cache/lifeboat-molecule}

key=$(printf '%s\n' "$IMAGE_REV" "$suite" "${PACKAGES[@]}" | sha256sum | cut -c1-12)
image=localhost/lifeboat-molecule:$key
if [ "${1:-}" = "--name" ]; then echo "$image"; exit 0; fi

log() { echo "podman-image: $*" >&2; }

if podman image exists "$image"; then
  echo "$image"
  exit 0
fi

mkdir -p "$cache"
tarball=$cache/rootfs-$suite-$key.tar
if [ ! -s "$tarball" ]; then
  command -v debootstrap >/dev/null || { log "debootstrap is missing: scripts/install-deps.sh test installs it"; exit 1; }
  work=$(mktemp -d "$cache/build.XXXXXX")
  trap 'rm -rf "$work"' EXIT
  rootfs=$work/rootfs
  t0=$SECONDS
  log "debootstrap $suite (${PACKAGES[*]}) into $rootfs ..."
  include=$(IFS=,; echo "${PACKAGES[*]}")
  if ! debootstrap --variant=minbase --include="$include" "$suite" "$rootfs" "$mirror" >"$work/debootstrap.log" 2>&1; then
    tail -30 "$work/debootstrap.log" >&2
    [ -f "$rootfs/debootstrap/debootstrap.log" ] && tail -30 "$rootfs/debootstrap/debootstrap.log" >&2
    exit 1
  fi
  log "debootstrap took $((SECONDS - t0)) s"
  # Container-friendly systemd: no gettys, no periodic apt/dpkg jobs (they
  # would run apt inside the test hosts), no udev-driven or hardware units.
  for unit in apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer e2scrub_all.timer fstrim.timer \
              getty@tty1.service console-getty.service systemd-udevd.service systemd-udev-trigger.service \
              systemd-modules-load.service sys-kernel-config.mount sys-kernel-debug.mount; do
    ln -sfn /dev/null "$rootfs/etc/systemd/system/$unit"
  done
  # Smaller image: apt's downloaded .debs are not needed (the lists stay, so
  # that ansible.builtin.package can see what is installed).
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/*
  echo "lifeboat-molecule" > "$rootfs/etc/hostname"
  printf 'image %s\npackages %s\n' "$key" "${PACKAGES[*]}" > "$rootfs/etc/lifeboat-molecule-image"
  tar -C "$rootfs" --numeric-owner -cf "$tarball.tmp" .
  mv "$tarball.tmp" "$tarball"
  rm -rf "$work"
  trap - EXIT
fi

t0=$SECONDS
podman import --change 'CMD ["/sbin/init"]' --change 'STOPSIGNAL SIGRTMIN+3' "$tarball" "$image" >/dev/null
log "podman import took $((SECONDS - t0)) s"

# Old keys: drop images and tarballs of other package lists.
for old in $(podman images --format '{{.Repository}}:{{.Tag}}' | grep '^localhost/lifeboat-molecule:' | grep -v ":$key\$" || true); do
  podman rmi "$old" >/dev/null 2>&1 || true
done
find "$cache" -maxdepth 1 -name "rootfs-*.tar" ! -name "rootfs-$suite-$key.tar" -delete
echo "$image"
