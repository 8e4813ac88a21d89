#!/usr/bin/env bash
# lint-imports over graphc as it installs: runtime/, frontends/, models/ and bench/ live beside graphc/ in the
# repository (setuptools maps them to graphc.runtime...), and import-linter reads a package from one folder,
# so the sources are copied into the installed layout first. tests/test_architecture.py does the same.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp -r "$root/graphc" "$tmp/graphc"
for d in runtime frontends models bench; do cp -r "$root/$d" "$tmp/graphc/$d"; done
cd "$tmp" && PYTHONPATH="$tmp" lint-imports --config "$root/pyproject.toml" --no-cache "$@"
