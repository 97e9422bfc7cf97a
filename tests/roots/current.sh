#!/bin/sh
# Makes the *current* test root, a Debian unstable tree holding the engines and clients people
# run today (Docker 28 with buildx, containerd 2, podman 5, buildah, skopeo, crane, oras,
# cosign, Bazel, Python, Node), and prints its path on the last line of stdout.
#
# The machine's own Debian 12 packages stay as they are (the old-engine tests run against
# them); the tests run these newer engines by chroot into this tree (tests/support/root.rs).
#
# Cached: the tree lives in $DCG_ROOT_CACHE (default /var/cache/docker-credential-gcp-tests)
# under a name keyed by this script's contents, so changing the package list (or anything
# else here) builds a new one; trees of other keys are removed once unused for three days. Built
# atomically: mmdebstrap writes a temporary directory that is renamed into place only when
# complete, so a half-made root is never used. Two processes calling this at once are
# serialised by a lock; the second finds the first one's tree.
#
# Needs root and mmdebstrap (Debian 12's is enough). The Debian mirror is the machine's own
# (its apt sources); nothing else is fetched. With DCG_PRINT_KEY=1 it prints the cache key and
# exits.
set -eu

# Everything the current-engine tests (and the client and Bazel tests built on this root) run.
# Debian names: docker.io is dockerd, docker-cli its CLI, containerd ships ctr; python3-grpcio
# is the tests' CRI client (there is no crictl package).
packages="
  docker.io docker-cli docker-buildx containerd runc crun tini-static iptables
  podman buildah skopeo conmon catatonit netavark aardvark-dns uidmap fuse-overlayfs passt
  crane oras cosign
  bazel-bootstrap default-jdk-headless
  python3 python3-venv python3-pip python3-grpcio nodejs npm
  ca-certificates iproute2 busybox-static openssl procps
"

# How the tree is made; with the package list, this is the cache key (comments and the rest of
# the script may change without a rebuild). Bump `recipe` when a step below changes the tree.
# Valid-Until is not checked: the mirror may serve a snapshot of the archive older than its
# Release file's validity window; the signature still is.
recipe=1
# shellcheck disable=SC2086 # $packages is a word list on purpose.
set -- --mode=root --variant=apt --format=directory \
  --aptopt='Acquire::Check-Valid-Until "false"' \
  --include="$(echo $packages | tr ' ' ',')" \
  --dpkgopt='path-exclude=/usr/share/locale/*' \
  --dpkgopt='path-exclude=/usr/share/doc/*' \
  --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  --customize-hook='rm -rf "$1"/var/cache/apt/archives/*.deb "$1"/var/lib/apt/lists/*_Packages*'
key=$(printf '%s\n' "recipe $recipe" "$@" | sha256sum | cut -c1-16)
print_key=${DCG_PRINT_KEY:-}
if [ -n "$print_key" ]; then
  echo "$key"
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "current.sh: building the test root needs root (mmdebstrap in root mode)" >&2
  exit 1
fi
command -v mmdebstrap >/dev/null || { echo "current.sh: mmdebstrap is not installed" >&2; exit 1; }

cache=${DCG_ROOT_CACHE:-/var/cache/docker-credential-gcp-tests}
root="$cache/current-$key"
mkdir -p "$cache"

# One builder at a time; whoever waited finds the finished tree. (mmdebstrap inherits the
# lock: a builder killed half-way still holds it until its mmdebstrap has exited.)
exec 9>"$cache/lock"
flock 9
if [ -e "$root/.complete" ]; then
  touch "$root/.used"
  echo "$root"
  exit 0
fi
# Left by a builder that died: nothing else can be writing them while we hold the lock.
for stale in "$root".tmp.*; do
  [ -d "$stale" ] || continue
  grep -F " $stale/" /proc/self/mounts | cut -d' ' -f2 | sort -r | while read -r m; do umount -l "$m"; done
  rm -rf --one-file-system "$stale"
done

# The machine's Debian mirror: the first URI of its own apt sources that serves the main
# archive (not the security one). Without one, mmdebstrap uses its default.
mirror=$(
  { cat /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '/^URIs:/ { for (i = 2; i <= NF; i++) print $i }'
    cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
      awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; break } }'
  } | grep -v -e security -e '^$' | head -n 1
) || true

tmp="$root.tmp.$$"
rm -rf --one-file-system "$tmp"
trap 'rm -rf --one-file-system "$tmp"' EXIT
start=$(date +%s)
echo "current.sh: building $root from Debian unstable${mirror:+ ($mirror)}" >&2
mmdebstrap "$@" unstable "$tmp" ${mirror:+"$mirror"} >&2
# The mark that the tree is whole.
date -u +%Y-%m-%dT%H:%M:%SZ > "$tmp/.complete"
touch "$tmp/.used"
mv -T "$tmp" "$root"
trap - EXIT
echo "current.sh: built in $(($(date +%s) - start)) s, $(du -sh --one-file-system "$root" | cut -f1)" >&2

# Trees of other keys (another package list) that no run has used for three days: other
# checkouts of the project on this machine may still use a recent one.
for old in "$cache"/current-*; do
  case $old in "$root" | *.tmp.*) continue ;; esac
  if [ -d "$old" ] && [ -z "$(find "$old/.used" -mtime -3 2>/dev/null)" ]; then
    rm -rf --one-file-system "$old"
  fi
done
echo "$root"
