#!/usr/bin/env bash
# ansible-test sanity on a clean copy of the collection placed under
# ansible_collections/lifeboat/backup, as ansible-test requires.
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD
# SANITY_ROOT lets parallel runs use separate copies.
sanity_root=${SANITY_ROOT:-build/sanity}
dest=$sanity_root/ansible_collections/lifeboat/backup
rm -rf "$dest"
mkdir -p "$dest"
git ls-files -z --cached --others --exclude-standard | rsync -a --ignore-missing-args --from0 --files-from=- ./ "$dest/"  # a file deleted but not yet committed is left out

# ansible-test bootstraps pip in its venvs with a get-pip.py downloaded from a
# host these machines cannot reach: put a stand-in in its cache, in a HOME
# private to this checkout.
export HOME="$top/$sanity_root/home"
reqs=$("$top/.venv/bin/python" -c 'import ansible_test, os; print(os.path.join(os.path.dirname(ansible_test.__file__), "_internal", "python_requirements.py"))')
pip_version=$(grep -oE "pip='[0-9.]+'" "$reqs" | head -1 | tr -dc '0-9.')
mkdir -p "$HOME/.ansible/test/cache"
cp scripts/get_pip_standin.py "$HOME/.ansible/test/cache/get_pip_${pip_version//./_}.py"

cd "$dest"
git init -q . && git add -A >/dev/null   # ansible-test lists files through git
python_version=$("$top/.venv/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
exec "$top/.venv/bin/ansible-test" sanity --venv --python "$python_version" --color no "$@"
