#!/usr/bin/env bash
# The whole suite, as `make test` and CI run it: sanity, lint, pytest.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
BIN=.venv/bin
failed=()
step() {
  local name=$1; shift
  local t0=$SECONDS
  echo "=== $name"
  if "$@"; then echo "=== $name: ok ($((SECONDS - t0)) s)"; else echo "=== $name: FAILED ($((SECONDS - t0)) s)"; failed+=("$name"); fi
}
step "ansible-test sanity" scripts/sanity.sh
step "ansible-lint (production profile)" "$BIN/ansible-lint" --profile production -q
read -r -a pytest_args <<< "${PYTEST_ARGS:-}"
step "pytest (unit and integration)" "$BIN/python" -m pytest "${pytest_args[@]}"
step "molecule (roles on systemd hosts in Podman)" scripts/molecule.sh
if [ ${#failed[@]} -gt 0 ]; then
  echo "FAILED steps: ${failed[*]}"
  exit 1
fi
echo "All steps passed."
