#!/bin/sh
# Generates the man page and shell completions from the clap definitions of the release binary,
# into target/assets/ (where the .deb and .rpm metadata in Cargo.toml expect them). Run after
# `cargo build --release`; .ci/run and the release workflow do. Nothing here is hand-written, so
# the man page and completions cannot drift from `--help`.
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
bin="${1:-$here/target/release/docker-credential-gcp}"
out="$here/target/assets"
[ -x "$bin" ] || { echo "generate-assets: build first (cargo build --release); no $bin" >&2; exit 1; }
mkdir -p "$out/completions"
"$bin" manpage | gzip -9n > "$out/docker-credential-gcp.1.gz"
"$bin" completions bash > "$out/completions/docker-credential-gcp.bash"
"$bin" completions zsh > "$out/completions/_docker-credential-gcp"
"$bin" completions fish > "$out/completions/docker-credential-gcp.fish"
echo "generated $out/docker-credential-gcp.1.gz and completions in $out/completions"
