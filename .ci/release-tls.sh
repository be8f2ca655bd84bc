#!/usr/bin/env bash
# Shows that the release build (no dev-dependencies: ldk-node, which turns
# rustls on for tests, is left out) has TLS for the wake-up webhook and the
# control client: reqwest's rustls features and rustls itself must appear in
# the normal dependency graph. Fails if they do not.
set -euo pipefail
cd "$(dirname "$0")/.."
tree=$(cargo tree -e normal,features -i rustls --target all)
echo "$tree" | head -40
echo "$tree" | grep -q 'reqwest feature "rustls-tls"' || { echo "reqwest has no rustls in the release build" >&2; exit 1; }
echo "$tree" | grep -q 'ldk-trampoline' || { echo "rustls does not reach ldk-trampoline without dev-dependencies" >&2; exit 1; }
echo "ok: the release build has rustls"
