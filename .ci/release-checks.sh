#!/usr/bin/env bash
# Checks that what users install can be verified (.ci/run calls this after install.sh has
# built the static executable; by hand: after `sh packaging/build-static.sh`, on a clean tree):
#
# 1. Reproducible: the committed tree, copied (git archive: no .git, so no commit date) into
#    another directory and built there with its own target directory, gives the same SHA-256.
# 2. Its dependency list: the executable carries the crates it was built from (cargo
#    auditable), read back with rust-audit-info (the reader `cargo audit bin` uses) and checked
#    against Cargo.lock.
# 3. cargo deny: licenses, bans and sources (.ci/deny.toml). No advisory database: CI cannot
#    fetch it.
#
# Needs cargo-auditable, rust-audit-info and cargo-deny (.ci/run installs them).
# Each step prints its wall time, the CPU time it took and the load average after it
# ("ci: release: ...").
set -euo pipefail
cd "$(dirname "$0")/.."

# CPU seconds used so far by this script's finished children (cutime + cstime): on a shared
# machine the wall time says little without it.
children_cpu() {
  local stat
  read -ra stat < /proc/$$/stat
  echo $(((stat[15] + stat[16]) / $(getconf CLK_TCK)))
}

step() {
  local name=$1 start=$SECONDS cpu
  cpu=$(children_cpu)
  shift
  "$@"
  local load
  read -r load _ < /proc/loadavg
  echo "ci: release: $name: $((SECONDS - start)) s, $(($(children_cpu) - cpu)) s CPU (load $load on $(nproc) cores)"
}

if [ -n "$(git status --porcelain --untracked-files=no)" ]; then
  echo "ci: release: the tree has uncommitted changes; the copy of HEAD would differ from it" >&2
  exit 1
fi

first=$(sh packaging/build-static.sh | tail -n 1)
elsewhere=$(mktemp -d)
trap 'rm -rf "$elsewhere"' EXIT
copy=$elsewhere/another/path/docker-credential-gcp
second=

build_elsewhere() {
  mkdir -p "$copy"
  git archive HEAD | tar -x -C "$copy"
  second=$(env -u SOURCE_DATE_EPOCH sh "$copy/packaging/build-static.sh" | tail -n 1)
}

compare() {
  sha256sum "$first" "$second"
  local a b
  a=$(sha256sum < "$first")
  b=$(sha256sum < "$second")
  if [ "$a" != "$b" ]; then
    echo "ci: release: the two builds differ (diffoscope, a Debian package, shows where)" >&2
    return 1
  fi
}

read_dependency_list() {
  rust-audit-info "$first" > "$elsewhere/deps.json"
  python3 - "$elsewhere/deps.json" <<'EOF'
import json, sys, tomllib

listed = json.load(open(sys.argv[1]))["packages"]
with open("Cargo.lock", "rb") as f:
    locked = {(p["name"], p["version"]) for p in tomllib.load(f)["package"]}
with open("Cargo.toml", "rb") as f:
    version = tomllib.load(f)["package"]["version"]
roots = [p for p in listed if p.get("root")]
assert [(p["name"], p["version"]) for p in roots] == [("docker-credential-gcp", version)], roots
unknown = [p for p in listed if (p["name"], p["version"]) not in locked]
assert not unknown, f"listed but not in Cargo.lock: {unknown}"
names = {p["name"] for p in listed}
for crate in ("rustls", "ring", "hyper", "tokio", "yup-oauth2", "keyring"):
    assert crate in names, f"{crate} is not listed"
print(f"ci: release: the executable lists {len(listed)} crates, all at their Cargo.lock versions")
EOF
}

step "second static build from a copy of HEAD in another directory" build_elsewhere
step "same SHA-256" compare
step "dependency list read back" read_dependency_list
step "cargo deny (licenses, bans, sources)" \
  cargo deny --locked --config .ci/deny.toml check licenses bans sources
