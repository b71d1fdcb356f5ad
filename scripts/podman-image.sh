#!/usr/bin/env bash
# Builds (once) a Debian systemd image the Molecule scenarios boot (bookworm
# with PostgreSQL 15 by default; trixie with PostgreSQL 17 for the host that
# the dr scenario rebuilds onto a newer release),
# without any image registry: debootstrap a rootfs, tar it, `podman import`.
#
# Two caches, both keyed by content:
#  - the debootstrap tarball (/var/cache/lifeboat-molecule/rootfs-*.tar),
#    keyed by the suite and the package list: the slow part (minutes);
#  - the podman image, keyed by that and by customize() below: made from the
#    tarball in well under a minute when only the customizations changed.
# Prints the image name.
#
#   scripts/podman-image.sh            build what is missing, print the name
#   scripts/podman-image.sh --name     print the name only
#
# Environment: LIFEBOAT_IMAGE_SUITE (bookworm or trixie; default bookworm),
# LIFEBOAT_IMAGE_CACHE (default /var/cache/lifeboat-molecule),
# LIFEBOAT_DEBIAN_MIRROR (default http://deb.debian.org/debian).
set -euo pipefail
cd "$(dirname "$0")/.."

DEBOOTSTRAP_REV=1  # bump to debootstrap again with the same packages
IMAGE_REV=2        # bump when customize() changes (its text is part of the key too)
# Everything the scenarios' hosts need, installed at image build time so that
# no scenario installs Debian packages: systemd as PID 1, Python for Ansible
# and the agent's venv, python3-apt for ansible.builtin.package, PostgreSQL
# (database hosts, and the verifier's scratch server), zstd and age for
# restoring by hand with standard tools.
PACKAGES=(systemd systemd-sysv dbus python3 python3-venv python3-apt sudo ca-certificates
          procps postgresql zstd age)
suite=${LIFEBOAT_IMAGE_SUITE:-bookworm}
case $suite in
  bookworm|trixie) ;;
  *) echo "podman-image: LIFEBOAT_IMAGE_SUITE=$suite is not supported: use bookworm or trixie" >&2; exit 2 ;;
esac
mirror=${LIFEBOAT_DEBIAN_MIRROR:-http://deb.debian.org/debian}
cache=${LIFEBOAT_IMAGE_CACHE:-/var/cache/lifeboat-molecule}

# Changes made to the debootstrap rootfs for life in a container.
customize() {
  local root=$1 unit
  # No gettys, no periodic apt/dpkg jobs (they would run apt inside the test
  # hosts), no udev or kernel-facing units.
  for unit in apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer e2scrub_all.timer fstrim.timer \
              getty@tty1.service console-getty.service systemd-udevd.service systemd-udev-trigger.service \
              systemd-modules-load.service sys-kernel-config.mount sys-kernel-debug.mount; do
    ln -sfn /dev/null "$root/etc/systemd/system/$unit"
  done
  # On a real host systemd makes / a shared mount at boot; in a container it
  # leaves that to the container manager, and podman's mounts are private.
  # LoadCredential= needs it: systemd prepares a unit's credentials in a
  # private namespace and moves the mount out, which only propagates from a
  # shared mount (otherwise $CREDENTIALS_DIRECTORY stays empty).
  cat > "$root/etc/systemd/system/lifeboat-rshared-root.service" <<'UNIT'
[Unit]
Description=Make / a shared mount, as systemd does on hosts (LoadCredential= needs it)
DefaultDependencies=no
Before=local-fs.target

[Service]
Type=oneshot
ExecStart=/bin/mount --make-rshared /
RemainAfterExit=yes

[Install]
WantedBy=local-fs.target
UNIT
  mkdir -p "$root/etc/systemd/system/local-fs.target.wants"
  ln -sfn ../lifeboat-rshared-root.service "$root/etc/systemd/system/local-fs.target.wants/lifeboat-rshared-root.service"
  echo "lifeboat-molecule" > "$root/etc/hostname"
}

rawkey=$(printf '%s\n' "$DEBOOTSTRAP_REV" "$suite" "${PACKAGES[@]}" | sha256sum | cut -c1-12)
key=$(printf '%s\n' "$rawkey" "$IMAGE_REV" "$(declare -f customize)" | sha256sum | cut -c1-12)
image=localhost/lifeboat-molecule:$suite-$key
if [ "${1:-}" = "--name" ]; then echo "$image"; exit 0; fi

log() { echo "podman-image: $*" >&2; }

if podman image exists "$image"; then
  echo "$image"
  exit 0
fi

mkdir -p "$cache"
tarball=$cache/rootfs-$suite-$rawkey.tar
work=$(mktemp -d "$cache/build.XXXXXX")
trap 'rm -rf "$work"' EXIT
rootfs=$work/rootfs
if [ ! -s "$tarball" ]; then
  command -v debootstrap >/dev/null || { log "debootstrap is missing: scripts/install-deps.sh test installs it"; exit 1; }
  t0=$SECONDS
  log "debootstrap $suite (${PACKAGES[*]}) ..."
  include=$(IFS=,; echo "${PACKAGES[*]}")
  if ! debootstrap --variant=minbase --include="$include" "$suite" "$rootfs" "$mirror" >"$work/debootstrap.log" 2>&1; then
    tail -30 "$work/debootstrap.log" >&2
    [ -f "$rootfs/debootstrap/debootstrap.log" ] && tail -30 "$rootfs/debootstrap/debootstrap.log" >&2
    exit 1
  fi
  # apt's downloaded .debs and the docs are not needed (the package lists
  # stay, so that ansible.builtin.package can see what is installed).
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/*
  printf 'debootstrap %s\npackages %s\n' "$rawkey" "${PACKAGES[*]}" > "$rootfs/etc/lifeboat-molecule-rootfs"
  tar -C "$rootfs" --numeric-owner -cf "$tarball.tmp" .
  mv "$tarball.tmp" "$tarball"
  log "debootstrap and tarball took $((SECONDS - t0)) s"
else
  mkdir -p "$rootfs"
  tar -C "$rootfs" --numeric-owner -xpf "$tarball"
fi

t0=$SECONDS
customize "$rootfs"
printf 'image %s\n' "$key" > "$rootfs/etc/lifeboat-molecule-image"
tar -C "$rootfs" --numeric-owner -cf - . |
  podman import --change 'CMD ["/sbin/init"]' --change 'STOPSIGNAL SIGRTMIN+3' - "$image" >/dev/null
log "customize and podman import took $((SECONDS - t0)) s"

# Other keys of this suite: drop older images and debootstrap tarballs (the
# other suite's image stays; an image of the naming before suites were added
# has a bare key as its tag and goes too).
for old in $(podman images --format '{{.Repository}}:{{.Tag}}' | grep -E "^localhost/lifeboat-molecule:($suite-)?[0-9a-f]{12}\$" | grep -v ":$suite-$key\$" || true); do
  podman rmi "$old" >/dev/null 2>&1 || true
done
find "$cache" -maxdepth 1 -name "rootfs-$suite-*.tar" ! -name "rootfs-$suite-$rawkey.tar" -delete
echo "$image"
