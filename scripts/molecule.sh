#!/usr/bin/env bash
# `make molecule`: the Molecule scenarios on real systemd hosts (Podman).
#
#  1. the two host fixes podman needs here (scripts/podman-host-fixes.sh),
#  2. the Debian bookworm systemd image, built once and cached by its
#     package list (scripts/podman-image.sh), and for the dr scenario the
#     trixie image (PostgreSQL 17) of the machine the lost host is rebuilt on,
#  3. the agent's wheel and a wheelhouse of its pinned dependencies, so that
#     the hosts install offline (scripts/build-agent-wheel.sh),
#  4. an age key pair on the controller: hosts get the recipient; only the
#     verifier host gets the identity,
#  5. moto's S3 server on the controller, reached by the containers as
#     host.containers.internal,
#  6. `molecule test` for each scenario, one after the other, with timings.
#
#   MOLECULE_SCENARIOS="default verifier dr" (default: all of them)
#   MOLECULE_DESTROY=never  keeps the containers for debugging
#   MOLECULE_COMMAND=converge|verify|destroy|...  one step instead of `test`
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
top=$PWD
export PATH=$top/.venv/bin:$PATH
export ANSIBLE_COLLECTIONS_PATH=$top/build/collections
export NO_COLOR=1 ANSIBLE_NOCOLOR=1 PY_COLORS=0
work=$top/build/molecule
mkdir -p "$work"
t_all=$SECONDS
timings=()
mark() { timings+=("$1: $(( SECONDS - $2 )) s"); echo "=== molecule harness: $1 took $(( SECONDS - $2 )) s"; }

t0=$SECONDS
CONTAINERS_CONF=$(scripts/podman-host-fixes.sh) || exit 1
export CONTAINERS_CONF
LIFEBOAT_MOLECULE_IMAGE=$(scripts/podman-image.sh) || { echo "image build failed" >&2; exit 1; }
export LIFEBOAT_MOLECULE_IMAGE
# The dr scenario rebuilds the lost bookworm/PostgreSQL 15 host onto a trixie/PostgreSQL 17 machine.
case " ${MOLECULE_SCENARIOS:-default verifier dr} " in
  *" dr "*)
    LIFEBOAT_MOLECULE_REBUILD_IMAGE=$(LIFEBOAT_IMAGE_SUITE=trixie scripts/podman-image.sh) \
      || { echo "image build (trixie) failed" >&2; exit 1; }
    export LIFEBOAT_MOLECULE_REBUILD_IMAGE ;;
esac
mark "host fixes and image ($LIFEBOAT_MOLECULE_IMAGE)" "$t0"

t0=$SECONDS
LIFEBOAT_AGENT_WHEEL=$(WHEELHOUSE=$work/wheelhouse scripts/build-agent-wheel.sh "$work/dist" 2>"$work/wheel.log") \
  || { cat "$work/wheel.log" >&2; exit 1; }
# One archive: a single transfer into each container instead of one per wheel.
if [ ! -s "$work/wheelhouse.tar" ] || [ -n "$(find "$work/wheelhouse" -newer "$work/wheelhouse.tar" -print -quit)" ]; then
  tar -C "$work/wheelhouse" -cf "$work/wheelhouse.tar.tmp" --sort=name --exclude='.deps-*' . && mv "$work/wheelhouse.tar.tmp" "$work/wheelhouse.tar"
fi
export LIFEBOAT_AGENT_WHEEL LIFEBOAT_WHEELHOUSE=$work/wheelhouse.tar
mark "agent wheel and wheelhouse" "$t0"

keys=$work/keys
if [ ! -s "$keys/identity.txt" ]; then
  mkdir -p "$keys" && chmod 700 "$keys"
  age-keygen -o "$keys/identity.txt" 2>/dev/null || { echo "age-keygen failed (is age installed?)" >&2; exit 1; }
fi
LIFEBOAT_MOLECULE_IDENTITY=$keys/identity.txt
LIFEBOAT_MOLECULE_RECIPIENT=$(age-keygen -y "$keys/identity.txt")
export LIFEBOAT_MOLECULE_IDENTITY LIFEBOAT_MOLECULE_RECIPIENT

LIFEBOAT_S3_PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("", 0)); print(s.getsockname()[1])')
export LIFEBOAT_S3_PORT
# Every address, so that the containers' bridge reaches it; the port is random
# and the server lives only as long as this script.
S3_IGNORE_SUBDOMAIN_BUCKETNAME=true moto_server -H 0.0.0.0 -p "$LIFEBOAT_S3_PORT" >"$work/moto.log" 2>&1 &
moto_pid=$!
trap 'kill "$moto_pid" 2>/dev/null; wait "$moto_pid" 2>/dev/null' EXIT
python3 - "$LIFEBOAT_S3_PORT" <<'PY' || { echo "moto_server did not start:" >&2; cat "$work/moto.log" >&2; exit 1; }
import sys, time, urllib.request
for _ in range(150):
    try:
        urllib.request.urlopen("http://127.0.0.1:%s/moto-api/" % sys.argv[1], timeout=1)
        sys.exit(0)
    except OSError:
        time.sleep(0.2)
sys.exit(1)
PY

scenarios=${MOLECULE_SCENARIOS:-default verifier dr}
failed=()
for scenario in $scenarios; do
  t0=$SECONDS
  args=("${MOLECULE_COMMAND:-test}" -s "$scenario")
  [ -n "${MOLECULE_DESTROY:-}" ] && args+=(--destroy "$MOLECULE_DESTROY")
  if molecule --base-config molecule/config.yml "${args[@]}"; then
    mark "scenario $scenario (ok)" "$t0"
  else
    mark "scenario $scenario (FAILED)" "$t0"
    failed+=("$scenario")
  fi
done
echo "=== molecule harness timings:"
printf '    %s\n' "${timings[@]}" "total: $(( SECONDS - t_all )) s"
if [ ${#failed[@]} -gt 0 ]; then
  echo "FAILED scenarios: ${failed[*]}"
  exit 1
fi
