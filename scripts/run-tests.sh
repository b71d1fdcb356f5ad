#!/usr/bin/env bash
# The whole suite, as `make test` and CI run it: sanity, lint, pytest and Molecule.
#
# Molecule runs beside the other steps (its log is printed when it ends): its
# scenarios wait on containers and the pytest suite waits on servers and
# child processes, so on 2 cores the two together take less wall time than one
# after the other. LIFEBOAT_SERIAL_STEPS=1 runs Molecule last, alone.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
BIN=.venv/bin
failed=()
t_all=$SECONDS
step() {
  local name=$1; shift
  local t0=$SECONDS
  echo "=== $name"
  if "$@"; then echo "=== $name: ok ($((SECONDS - t0)) s)"; else echo "=== $name: FAILED ($((SECONDS - t0)) s)"; failed+=("$name"); fi
}
molecule_name="molecule (roles on systemd hosts in Podman)"
molecule_pid=
if [ "${LIFEBOAT_SERIAL_STEPS:-0}" != 1 ]; then
  mkdir -p build
  rm -f build/molecule-step.rc
  echo "=== $molecule_name: started beside the other steps (log: build/molecule-step.log)"
  ( t0=$SECONDS; scripts/molecule.sh >build/molecule-step.log 2>&1; rc=$?
    echo "$rc $((SECONDS - t0))" >build/molecule-step.rc ) &
  molecule_pid=$!
fi
step "ansible-test sanity" scripts/sanity.sh
step "ansible-lint (production profile)" "$BIN/ansible-lint" --profile production -q
read -r -a pytest_args <<< "${PYTEST_ARGS:-}"
step "pytest (unit and integration)" "$BIN/python" -m pytest "${pytest_args[@]}"
if [ -n "$molecule_pid" ]; then
  t_wait=$SECONDS
  wait "$molecule_pid"
  echo "=== $molecule_name (log below; waited $((SECONDS - t_wait)) s for it after pytest)"
  cat build/molecule-step.log
  read -r rc took < build/molecule-step.rc 2>/dev/null || { rc=1; took='?'; }
  if [ "$rc" = 0 ]; then echo "=== $molecule_name: ok ($took s)"; else echo "=== $molecule_name: FAILED ($took s)"; failed+=("$molecule_name"); fi
else
  step "$molecule_name" scripts/molecule.sh
fi
echo "=== all steps took $((SECONDS - t_all)) s"
if [ ${#failed[@]} -gt 0 ]; then
  echo "FAILED steps: ${failed[*]}"
  exit 1
fi
echo "All steps passed."
