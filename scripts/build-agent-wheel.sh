#!/usr/bin/env bash
# Builds the host agent's wheel (package lifeboat_engine = plugins/module_utils,
# console script `lifeboat`) from a clean copy, so that the shared checkout
# gets no build leftovers. Prints the wheel's path.
#
#   scripts/build-agent-wheel.sh [OUT_DIR]                 the wheel only
#   WHEELHOUSE=DIR scripts/build-agent-wheel.sh [OUT_DIR]  also download the
#       pinned dependencies' wheels into DIR (for offline installs on hosts)
#
# A wheel is rebuilt only when the engine's sources or pyproject.toml change.
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD
out=${1:-build/agent/dist}
py=${PYTHON:-$top/.venv/bin/python}
mkdir -p "$out"
out=$(cd "$out" && pwd)
# Every engine file, in its subpackages too (sorted, so that the key is stable).
key=$( (cat pyproject.toml; find plugins/module_utils -name '*.py' -not -path '*/__pycache__/*' | LC_ALL=C sort | while read -r f; do echo "$f"; cat "$f"; done) | sha256sum | cut -c1-16)
stamp=$out/.source-$key
wheel=$(find "$out" -maxdepth 1 -name 'lifeboat_agent-*.whl' -print -quit)
if [ ! -f "$stamp" ] || [ -z "$wheel" ]; then
  src=$(mktemp -d "$top/build/agent-src.XXXXXX")
  trap 'rm -rf "$src"' EXIT
  mkdir -p "$src/plugins"
  cp pyproject.toml "$src/"
  # The engine's tree (its private subpackages too), without caches.
  (cd plugins && find module_utils -name '*.py' -not -path '*/__pycache__/*' -print0 | xargs -0 cp --parents -t "$src/plugins")
  rm -f "$out"/lifeboat_agent-*.whl "$out"/.source-*
  if ! "$py" -m pip wheel -q --no-deps -w "$out" "$src" >"$out/build.log" 2>&1; then
    cat "$out/build.log" >&2
    exit 1
  fi
  touch "$stamp"
  wheel=$(find "$out" -maxdepth 1 -name 'lifeboat_agent-*.whl' -print -quit)
fi
# The hosts' Pythons: Debian 12 (CPython 3.11) and Debian 13 (CPython 3.13, the
# host the Molecule dr scenario rebuilds onto), x86_64.
host_pythons="3.11 3.13"
deps_key=$( ("$py" -c 'import sys, tomllib; print("\n".join(tomllib.load(open(sys.argv[1], "rb"))["project"]["dependencies"]))' pyproject.toml; echo "$host_pythons") | sha256sum | cut -c1-16)
if [ -n "${WHEELHOUSE:-}" ] && [ ! -f "$WHEELHOUSE/.deps-$deps_key" ]; then
  mkdir -p "$WHEELHOUSE"
  rm -f "$WHEELHOUSE"/.deps-* "$WHEELHOUSE"/*.whl
  # Dependencies only (the agent's own wheel is installed from $out), for
  # each of the hosts' Pythons; pip on the host picks the wheels it can use.
  for hp in $host_pythons; do
    "$py" -m pip download -q -d "$WHEELHOUSE" --only-binary=:all: \
      --python-version "$hp" --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
      --platform manylinux_2_28_x86_64 --platform any --implementation cp \
      -r <("$py" -c 'import sys, tomllib; print("\n".join(tomllib.load(open(sys.argv[1], "rb"))["project"]["dependencies"]))' "$top/pyproject.toml") >&2
  done
  touch "$WHEELHOUSE/.deps-$deps_key"
fi
echo "$wheel"
