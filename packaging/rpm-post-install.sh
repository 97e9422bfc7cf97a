#!/bin/sh
# The package never edits users' Docker configuration; it only says how to.
set -e
if true; then
  cat <<'TXT'
docker-credential-gcp is installed. Each user who pulls from Google registries runs once:
  docker-credential-gcp configure-docker [--discover]
and can check the set-up with:
  docker-credential-gcp doctor
TXT
fi
exit 0
