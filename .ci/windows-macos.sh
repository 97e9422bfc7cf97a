#!/usr/bin/env bash
# Windows and macOS, checked from Linux with Debian 12's own packages (.ci/run calls this; run
# it by hand the same way, as root on Debian 12, from anywhere in the tree):
#
# - Windows (x86_64-pc-windows-gnu): built with clippy -D warnings on every target, linked by
#   mingw-w64, and its unit and integration tests run under Wine 8.
# - macOS (x86_64- and aarch64-apple-darwin): clippy -D warnings on every target. Type-checking
#   only: linking needs Apple's SDK.
#
# The compiler is Debian 12's Rust, 1.96 today (the security suite's rustc-web, cargo-web,
# libstd-rust-web-dev, rust-web-src, rust-web-clippy), downloaded with apt-get download and
# unpacked into a folder under target/, never installed: the machine's own Rust stays as it
# is. Debian builds std only for Linux, so the other targets' std is built from rust-web-src
# (-Zbuild-std, allowed on a stable compiler by RUSTC_BOOTSTRAP=1). rustup's Windows and macOS
# targets are not used.
#
# Needs, as Debian 12 packages (.ci/run installs them): gcc-mingw-w64-x86-64 wine wine64
# clang-14 llvm-14 libgit2-1.5 (Debian's cargo links it).
#
# Each step prints its wall time, the CPU time it took and the load average after it
# ("ci: windows-macos: ...").
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

# The newest Rust in Debian 12's security suite (1.96 when this was written). Not pinned: the
# archive keeps only the newest version of a package, so a pinned one would vanish with the
# next security update.
rust_version=$(apt-cache policy rustc-web | sed -n 's/^  Candidate: //p')
rust_minor=$(echo "$rust_version" | sed -n 's/^\([0-9]*\.[0-9]*\)\..*/\1/p')
if [ -z "$rust_minor" ]; then
  echo "ci: windows-macos: no rustc-web in the apt lists (Debian 12's security suite; apt-get update?)"
  exit 1
fi
toolchain=$repo/target/debian-rust-$rust_minor
# One target directory for both OSes: the build scripts and proc macros (host code) are
# compiled once.
target_dir=$repo/target/debian-rust
wine_prefix=$repo/target/wine

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
  echo "ci: windows-macos: $name: $((SECONDS - start)) s, $(($(children_cpu) - cpu)) s CPU (load $load on $(nproc) cores)"
}

fetch_toolchain() {
  if [ "$(cat "$toolchain/version" 2>/dev/null)" = "$rust_version" ]; then
    return
  fi
  # The LLVM library this rustc links (libllvm22 for 1.96).
  local llvm debs
  llvm=$(apt-cache show "libstd-rust-web-$rust_minor=$rust_version" |
    sed -n 's/^Depends:.*\(libllvm[0-9]*\).*/\1/p')
  debs=$(mktemp -d)
  # apt-get download only fetches; the packages are unpacked by hand below.
  (cd "$debs" && apt-get download -q -o APT::Sandbox::User=root \
    "rustc-web=$rust_version" "cargo-web=$rust_version" "rust-web-clippy=$rust_version" \
    "libstd-rust-web-$rust_minor=$rust_version" "libstd-rust-web-dev=$rust_version" \
    "rust-web-src=$rust_version" "$llvm" >/dev/null)
  rm -rf "$toolchain.partial"
  for deb in "$debs"/*.deb; do
    dpkg-deb -x "$deb" "$toolchain.partial"
  done
  rm -rf "$debs"
  echo "$rust_version" > "$toolchain.partial/version"
  rm -rf "$toolchain"
  mv "$toolchain.partial" "$toolchain"
}

# Runs a program of Debian's toolchain from the folder.
debian() {
  PATH="$toolchain/usr/bin:$PATH" LD_LIBRARY_PATH="$toolchain/usr/lib/x86_64-linux-gnu" "$@"
}

# `debian_cargo SUBCOMMAND ARGS...`: RUSTC_BOOTSTRAP=1 allows -Zbuild-std.
debian_cargo() {
  local subcommand=$1
  shift
  RUSTC_BOOTSTRAP=1 debian cargo "$subcommand" --locked -Zbuild-std --target-dir "$target_dir" "$@"
}

export WINEPREFIX=$wine_prefix WINEDEBUG=-all
prepare_wine() {
  local dll=$wine_prefix/drive_c/windows/system32/bcryptprimitives.dll
  if [ -e "$dll" ]; then
    return
  fi
  # No Mono or Gecko: nothing here needs .NET or a browser engine.
  WINEDLLOVERRIDES="mscoree,mshtml=" wineboot --init >/dev/null 2>&1
  wineserver --wait
  # Wine 8 lacks ProcessPrng, which Rust's std and getrandom import (.ci/wine/).
  x86_64-w64-mingw32-gcc -shared -O2 -s -o "$dll" .ci/wine/bcryptprimitives.c -lbcrypt
}

for tool in x86_64-w64-mingw32-gcc wine wineserver clang-14 llvm-ar-14 apt-get dpkg-deb; do
  command -v "$tool" >/dev/null || { echo "ci: windows-macos: $tool is missing (see the top of $0)"; exit 1; }
done

step "Debian Rust $rust_version into target/" fetch_toolchain
debian rustc --version
step "Wine prefix" prepare_wine

# macOS: ring's C code is compiled by clang for the Apple target, without the SDK's headers
# (-nostdlibinc; RING_CORE_NOSTDLIBINC makes ring do without them) but with a stand-in for the
# one SDK header ring reads (.ci/macos/TargetConditionals.h).
for triple in x86_64_apple_darwin aarch64_apple_darwin; do
  export "CC_$triple=clang-14" "AR_$triple=llvm-ar-14"
  export "CFLAGS_$triple=-ffreestanding -nostdlibinc -DRING_CORE_NOSTDLIBINC=1 -isystem $repo/.ci/macos"
done
step "macOS clippy --all-targets -D warnings (x86_64, aarch64)" \
  debian_cargo clippy --all-targets --target x86_64-apple-darwin --target aarch64-apple-darwin \
  -- -D warnings

# Windows: one build serves clippy and the tests. clippy-driver is the workspace's compiler
# wrapper, exactly as `cargo clippy` sets it up (CLIPPY_ARGS is how cargo-clippy hands it the
# lint flags), so the lints run while the test executables are built; a separate `cargo
# clippy` would compile every dependency again in check mode.
export CARGO_TARGET_X86_64_PC_WINDOWS_GNU_LINKER=x86_64-w64-mingw32-gcc
export CARGO_TARGET_X86_64_PC_WINDOWS_GNU_RUNNER=wine
export RUSTC_WORKSPACE_WRAPPER=$toolchain/usr/bin/clippy-driver
export CLIPPY_ARGS="-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__"
windows=(--target x86_64-pc-windows-gnu)
step "Windows build with clippy --all-targets -D warnings" \
  debian_cargo test --no-run --all-targets "${windows[@]}"
# The same units as above (the wrapper is still set), so nothing is rebuilt: the library's
# unit tests and the integration tests, each executable run by Wine.
step "Windows tests under Wine" debian_cargo test --lib --test tests "${windows[@]}"
wineserver --kill || true
