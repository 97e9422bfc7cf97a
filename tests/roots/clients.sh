#!/bin/sh
# Installs the clients that are not Debian packages, at pinned versions, for the current_engines
# client tests (tests/current_engines/clients.rs): testcontainers for Python and docker-py into a
# venv made with the current root's Python, testcontainers for Node with the root's npm.
#
# It runs inside a session of the current test root (tests/support/root.rs), never on the
# machine's own Python or Node: `sh -c "$(cat clients.sh)" sh CACHE DEST`, with CACHE shared into
# the session at the same path. DEST (CACHE/clients-KEY, KEY from this script's contents and the
# root's name) gets venv/ and node/node_modules/; it is made once and reused by later runs.
# Built in a temporary directory renamed into place when complete; concurrent callers are
# serialised by a lock, and the second finds the first one's tree. Trees of other keys unused
# for three days are removed.
#
# The packages come from the package registries through pip and npm as configured by the
# environment (PIP_CERT, npm_config_cafile: the machine's trust store, which the caller copies
# into the session, since the root's own may not hold the CA the machine's network needs).
set -eu

# Pinned: changing a version here changes the key, so the next run installs anew.
python_packages="testcontainers==4.15.0 docker==7.2.0"
node_packages="testcontainers@12.2.0"

cache=$1 dest=$2

exec 9>"$cache/clients.lock"
flock 9
if [ -e "$dest/.complete" ]; then
  touch "$dest/.used"
  exit 0
fi
# Left by a builder that died: nothing else writes them while we hold the lock.
for stale in "$dest".tmp.*; do
  [ -d "$stale" ] && rm -rf "$stale"
done

tmp="$dest.tmp.$$"
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/node"
start=$(date +%s)
# The venv is used by its bin/python only, which still works once the directory is renamed.
python3 -m venv "$tmp/venv"
# shellcheck disable=SC2086 # word lists on purpose.
"$tmp/venv/bin/python" -m pip install --quiet --no-cache-dir --disable-pip-version-check $python_packages >&2
# No install scripts and no optional packages: nothing is compiled, and the modules are plain
# JavaScript that any Node of the root runs.
# shellcheck disable=SC2086
npm install --prefix "$tmp/node" --no-audit --no-fund --no-package-lock --ignore-scripts \
  --omit=optional --loglevel=error --cache "$tmp/npm-cache" $node_packages >&2
rm -rf "$tmp/npm-cache"
date -u +%Y-%m-%dT%H:%M:%SZ > "$tmp/.complete"
touch "$tmp/.used"
mv -T "$tmp" "$dest"
trap - EXIT
echo "clients.sh: installed $python_packages $node_packages in $(($(date +%s) - start)) s" >&2

for old in "$cache"/clients-*; do
  case $old in "$dest" | *.tmp.* | *.lock) continue ;; esac
  if [ -d "$old" ] && [ -z "$(find "$old/.used" -mtime -3 2>/dev/null)" ]; then
    rm -rf "$old"
  fi
done
