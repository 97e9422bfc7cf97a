#!/bin/sh
# Build docker-credential-gcp from source (or take a prebuilt binary) and install it.
#
#   ./install.sh                  build with cargo (packaging/build-static.sh: static on Linux),
#                                 install to ~/.local/bin (root: /usr/local/bin)
#   ./install.sh --prefix DIR     install to DIR/bin
#   ./install.sh --binary PATH    install PATH instead of building
#   ./install.sh --no-configure   do not run `docker-credential-gcp configure-docker` afterwards
#   ./install.sh --uninstall      remove the installed binary
#
# Safe to run again: it replaces the binary atomically, and configure-docker changes nothing
# that is already set up. Extra arguments after -- go to configure-docker.
set -eu

name=docker-credential-gcp
if [ "$(id -u)" = 0 ]; then prefix=/usr/local; else prefix="$HOME/.local"; fi
binary=
uninstall=no
configure=yes

usage() { sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) [ $# -ge 2 ] || { echo "install.sh: --prefix needs a directory" >&2; exit 2; }; prefix=$2; shift 2 ;;
    --prefix=*) prefix=${1#--prefix=}; shift ;;
    --binary) [ $# -ge 2 ] || { echo "install.sh: --binary needs a path" >&2; exit 2; }; binary=$2; shift 2 ;;
    --binary=*) binary=${1#--binary=}; shift ;;
    --uninstall) uninstall=yes; shift ;;
    --no-configure) configure=no; shift ;;
    --) shift; break ;;
    -h|--help) usage; exit 0 ;;
    *) echo "install.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
  esac
done

bindir="$prefix/bin"
target="$bindir/$name"

if [ "$uninstall" = yes ]; then
  if [ -e "$target" ]; then rm -f "$target"; echo "removed $target"; else echo "$target is not installed"; fi
  exit 0
fi

if [ -z "$binary" ]; then
  command -v cargo >/dev/null 2>&1 || { echo "install.sh: cargo is needed to build from source (https://rustup.rs), or pass --binary PATH" >&2; exit 1; }
  here=$(cd "$(dirname "$0")" && pwd)
  echo "building $name (release; a static executable on Linux)..."
  # The build prints the executable's path last; its own errors go to stderr.
  built=$(sh "$here/packaging/build-static.sh") ||
    { echo "install.sh: the build failed (its errors are above); nothing was installed" >&2; exit 1; }
  binary=$(printf '%s\n' "$built" | tail -n 1)
fi
[ -f "$binary" ] || { echo "install.sh: no binary at $binary" >&2; exit 1; }

mkdir -p "$bindir"
tmp="$bindir/.$name.tmp.$$"
trap 'rm -f "$tmp"' EXIT
cp "$binary" "$tmp"
chmod 755 "$tmp"
mv -f "$tmp" "$target"
trap - EXIT

version=$("$target" version) || { echo "install.sh: the installed binary does not run: $target" >&2; exit 1; }
echo "installed $version to $target"

case ":$PATH:" in
  *":$bindir:"*) ;;
  *) echo "warning: $bindir is not on PATH; docker finds helpers on PATH. Add it, e.g.:"
     echo "  export PATH=\"$bindir:\$PATH\"" ;;
esac

if [ "$configure" = yes ]; then
  echo "running: $target configure-docker $*"
  "$target" configure-docker "$@"
else
  echo "skipped configure-docker; run it later: $target configure-docker [--discover]"
fi
echo "check the set-up with: $target doctor"
