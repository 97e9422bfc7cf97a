#!/bin/sh
# Builds the executable users install and prints its path on the last line.
#
#   sh packaging/build-static.sh [TRIPLE]
#
# On Linux it is a static executable, so it runs on any distribution, old or new, and in
# empty images (scratch, distroless-static, Alpine) where CI jobs install credential helpers:
# for TRIPLE if given (the release workflow names each), else musl when that target is
# installed, otherwise glibc linked in with crt-static, as a static-pie with packed relative
# relocations (see BENCHMARKS.md for why static-pie rather than non-PIE). The target triple is
# named explicitly so that RUSTFLAGS reach only the target's crates: proc-macro crates run
# inside the compiler and must stay dynamic. Elsewhere it is the ordinary release build.
#
# Reproducible: the same commit, toolchain and target give the same bytes wherever the tree
# and cargo's home are. Panic locations in dependencies name their sources under cargo's home,
# so that is remapped to /cargo; the tree's own sources are compiled by relative path, and its
# remap to /build covers anything generated under target/. SOURCE_DATE_EPOCH is the commit's
# time for any tool that stamps a date (none does today). CI builds it a second time from a
# copy of the tree in another directory and compares (.ci/release-checks.sh).
#
# Auditable: with cargo-auditable installed (CI and the release workflow install it), the
# executable carries the list of crates it was built from, which `cargo audit bin`, trivy and
# syft read.
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
name=docker-credential-gcp
triple=${1:-}

# cargo splits RUSTFLAGS on spaces; CARGO_ENCODED_RUSTFLAGS (separated by 0x1f) keeps a path
# with spaces whole, and takes the caller's RUSTFLAGS along.
sep=$(printf '\037')
flags=
add_flag() { flags="${flags:+$flags$sep}$1"; }
for f in ${RUSTFLAGS:-}; do add_flag "$f"; done
unset RUSTFLAGS
add_flag "--remap-path-prefix=${CARGO_HOME:-$HOME/.cargo}=/cargo"
add_flag "--remap-path-prefix=$here=/build"

if [ -z "${SOURCE_DATE_EPOCH:-}" ] && git -C "$here" rev-parse --git-dir >/dev/null 2>&1; then
  SOURCE_DATE_EPOCH=$(git -C "$here" log -1 --format=%ct)
  export SOURCE_DATE_EPOCH
fi

if cargo auditable --version >/dev/null 2>&1; then
  build="auditable build"
else
  echo "build-static.sh: cargo-auditable is not installed; the executable will not list its crates" >&2
  build=build
fi

if [ "$(uname -s)" != Linux ] && [ -z "$triple" ]; then
  CARGO_ENCODED_RUSTFLAGS=$flags cargo $build --release --locked \
    --manifest-path "$here/Cargo.toml" >&2
  echo "$here/target/release/$name"
  exit 0
fi

arch=$(uname -m)
if [ -z "$triple" ]; then
  if rustup target list --installed 2>/dev/null | grep -qx "$arch-unknown-linux-musl"; then
    triple="$arch-unknown-linux-musl"
  else
    triple="$arch-unknown-linux-gnu"
  fi
fi
case "$triple" in
  *-linux-gnu)
    add_flag "-Ctarget-feature=+crt-static"
    # Packed relative relocations make the static-pie's self-relocation at start-up much
    # cheaper. They need the linker to write them (binutils >= 2.38) and the glibc linked in
    # to read them (>= 2.36): an older glibc's start-up code would skip them and crash.
    glibc=$(getconf GNU_LIBC_VERSION 2>/dev/null | sed -n 's/^glibc \([0-9]*\)\.\([0-9]*\).*/\1 \2/p')
    set -- $glibc
    if [ "${1:-0}" -gt 2 ] || { [ "${1:-0}" -eq 2 ] && [ "${2:-0}" -ge 36 ]; }; then
      relr_ok=yes
    else
      relr_ok=no
    fi
    if [ "$relr_ok" = yes ] && ld --help 2>/dev/null | grep -q pack-relative-relocs; then
      add_flag "-Clink-arg=-Wl,-z,pack-relative-relocs"
    fi
    ;;
esac
CARGO_ENCODED_RUSTFLAGS=$flags cargo $build --release --locked --target "$triple" \
  --manifest-path "$here/Cargo.toml" >&2
bin="$here/target/$triple/release/$name"
case "$triple" in
  "$arch"-*) "$bin" version >&2 ;;
esac
echo "$bin"
