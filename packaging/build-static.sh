#!/bin/sh
# Builds the executable users install and prints its path on the last line.
#
# On Linux it is a static executable, so it runs on any distribution, old or new, and in
# empty images (scratch, distroless-static, Alpine) where CI jobs install credential helpers:
# musl when that target is installed, otherwise glibc linked in with crt-static, as a
# static-pie with packed relative relocations (see BENCHMARKS.md for why static-pie rather than
# non-PIE). The target triple is named explicitly so that RUSTFLAGS reach only the target's
# crates: proc-macro crates run inside the compiler and must stay dynamic. Elsewhere it is the
# ordinary release build.
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
name=docker-credential-gcp

if [ "$(uname -s)" != Linux ]; then
  cargo build --release --locked --manifest-path "$here/Cargo.toml" >&2
  echo "$here/target/release/$name"
  exit 0
fi

arch=$(uname -m)
if rustup target list --installed 2>/dev/null | grep -qx "$arch-unknown-linux-musl"; then
  triple="$arch-unknown-linux-musl"
  flags=""
else
  triple="$arch-unknown-linux-gnu"
  flags="-C target-feature=+crt-static"
  # Packed relative relocations make the static-pie's self-relocation at start-up much
  # cheaper. They need the linker to write them (binutils >= 2.38) and the glibc linked in to
  # read them (>= 2.36): an older glibc's start-up code would skip them and crash.
  glibc=$(getconf GNU_LIBC_VERSION 2>/dev/null | sed -n 's/^glibc \([0-9]*\)\.\([0-9]*\).*/\1 \2/p')
  set -- $glibc
  if [ "${1:-0}" -gt 2 ] || { [ "${1:-0}" -eq 2 ] && [ "${2:-0}" -ge 36 ]; }; then
    relr_ok=yes
  else
    relr_ok=no
  fi
  if [ "$relr_ok" = yes ] && ld --help 2>/dev/null | grep -q pack-relative-relocs; then
    flags="$flags -C link-arg=-Wl,-z,pack-relative-relocs"
  fi
fi
RUSTFLAGS="${RUSTFLAGS:-} $flags" cargo build --release --locked --target "$triple" \
  --manifest-path "$here/Cargo.toml" >&2
bin="$here/target/$triple/release/$name"
"$bin" version >&2
echo "$bin"
