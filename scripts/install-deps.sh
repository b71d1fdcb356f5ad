#!/usr/bin/env bash
# Installs the Debian packages a target needs, only those missing.
#   scripts/install-deps.sh demo   -> what `make demo` needs
#   scripts/install-deps.sh test   -> what `make test` needs
set -euo pipefail
set_name=${1:-test}
demo_pkgs=(python3 python3-venv python3-pip sqlite3 zstd)
test_pkgs=("${demo_pkgs[@]}" postgresql postgresql-client age openssh-client git rsync shellcheck)
test_pkgs+=(podman debootstrap)  # Molecule: systemd hosts in Podman from a local debootstrap image
test_pkgs+=(prometheus prometheus-node-exporter)  # monitoring/: promtool, and a real Prometheus scraping a node exporter
test_pkgs+=(chromium)  # the drill and DR HTML reports, opened in headless Chromium (tests/browser.py)
case "$set_name" in
  demo) want=("${demo_pkgs[@]}") ;;
  test) want=("${test_pkgs[@]}") ;;
  *) echo "usage: $0 demo|test" >&2; exit 2 ;;
esac
missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null; then SUDO="sudo"; else
    echo "Missing Debian packages: ${missing[*]}. Run as root (or install sudo) so that make can install them." >&2
    exit 1
  fi
fi
echo "Installing Debian packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# The monitoring tests start Prometheus and the node exporter themselves, on free loopback ports:
# the services the packages start on a systemd host are not wanted.
if [[ " ${missing[*]} " == *" prometheus"* ]] && [ -d /run/systemd/system ]; then
  $SUDO systemctl disable --now prometheus.service prometheus-node-exporter.service >/dev/null 2>&1 || true
fi
# The postgresql package starts a default cluster; the tests make their own
# throwaway clusters and never rely on it.
