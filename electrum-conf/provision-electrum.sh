#!/usr/bin/env bash
# Provisions Electrum 4.3.4 (Debian's `electrum` package) and ElectrumX (PyPI's
# `e-x`, in a virtualenv in the cache) for the regtest tests, printing on the
# last line of stdout the directory that holds `electrum`, `electrumx_server`
# and `python3` (Debian's, the only one Electrum's modules load under).
#
# Idempotent: a second run finds everything in place and prints the same
# directory at once. The cache is $LDK_TRAMPOLINE_CACHE (default
# $HOME/.cache/ldk-trampoline); one provisioning at a time holds its lock.
set -euo pipefail

ELECTRUM_VERSION=4.3.4
EX_PACKAGE="e-x"
# ElectrumX 2.0 wants Bitcoin Core 31 with -txindex and -txospenderindex
# (electrumx/lib/coins.py); the harness starts bitcoind so.
EX_VERSION="2.0.0"
PLYVEL_VERSION="1.5.1"
CACHE_ROOT="${LDK_TRAMPOLINE_CACHE:-$HOME/.cache/ldk-trampoline}"
DIR="$CACHE_ROOT/electrum-$ELECTRUM_VERSION"
VENV="$DIR/electrumx-venv"
BIN="$DIR/bin"
DEBIAN_PKGS=(electrum libleveldb-dev python3-venv python3-dev g++)

say() { echo "provision-electrum: $*" >&2; }
die() { say "error: $*"; exit 1; }

# Everything in place: Debian's electrum at the right version, the venv's
# server, and the links in $BIN.
ready() {
    [[ -x "$BIN/electrum" && -x "$BIN/electrumx_server" && -x "$BIN/python3" ]] || return 1
    local v
    v=$(dpkg-query -W -f='${Version}' electrum 2>/dev/null) || return 1
    [[ "$v" == "$ELECTRUM_VERSION"* ]] || return 1
    venv_ready
}

# The venv holds the pinned ElectrumX and a working plyvel.
venv_ready() {
    "$VENV/bin/python" -c "import importlib.metadata as m, electrumx, plyvel; \
assert m.version('$EX_PACKAGE') == '$EX_VERSION'" 2>/dev/null
}

if ready; then
    say "using cached $BIN"
    echo "$BIN"
    exit 0
fi

mkdir -p "$CACHE_ROOT"
# Not bitcoind's lock: the two provisionings run side by side.
exec 9>"$CACHE_ROOT/provision-electrum.lock"
say "waiting for the provisioning lock ($CACHE_ROOT/provision-electrum.lock)"
flock 9
if ready; then
    say "another process provisioned it meanwhile: $BIN"
    echo "$BIN"
    exit 0
fi
start=$(date +%s)

need_pkgs=()
for pkg in "${DEBIAN_PKGS[@]}"; do
    status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
    [[ "$status" == *"install ok installed"* ]] || need_pkgs+=("$pkg")
done
if ((${#need_pkgs[@]})); then
    say "installing Debian packages: ${need_pkgs[*]}"
    SUDO=""
    [[ $(id -u) -eq 0 ]] || SUDO="sudo"
    # Another apt run (bitcoind's provisioning) may hold dpkg's lock: wait for it.
    APT=(-o DPkg::Lock::Timeout=900)
    $SUDO apt-get "${APT[@]}" update -qq >&2 || die "apt-get update failed"
    policy=$(apt-cache policy electrum)
    if [[ "$policy" != *"Candidate: $ELECTRUM_VERSION"* ]]; then
        die "Debian offers no electrum $ELECTRUM_VERSION (apt-cache policy electrum); the tests are written against it"
    fi
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get "${APT[@]}" install -y -qq --no-install-recommends \
        "${need_pkgs[@]}" >&2 || die "apt-get install ${need_pkgs[*]} failed"
fi
v=$(dpkg-query -W -f='${Version}' electrum)
[[ "$v" == "$ELECTRUM_VERSION"* ]] || die "electrum $v is installed, the tests need $ELECTRUM_VERSION (apt-get install electrum=$ELECTRUM_VERSION*)"
/usr/bin/python3 -c 'import electrum' || die "Debian's /usr/bin/python3 cannot import electrum"

mkdir -p "$DIR"
if ! venv_ready; then
    say "installing ElectrumX ($EX_PACKAGE $EX_VERSION) and plyvel from PyPI into $VENV"
    rm -rf "$VENV"
    /usr/bin/python3 -m venv "$VENV" || die "python3 -m venv $VENV failed (apt-get install python3-venv)"
    "$VENV/bin/pip" install --quiet "$EX_PACKAGE==$EX_VERSION" "plyvel==$PLYVEL_VERSION" >&2 \
        || die "pip install $EX_PACKAGE plyvel failed (needs libleveldb-dev and g++ for plyvel)"
    venv_ready || die "the venv cannot import electrumx $EX_VERSION and plyvel"
fi
server=$(command -v "$VENV/bin/electrumx_server" || true)
[[ -n "$server" ]] || die "$EX_PACKAGE installed no electrumx_server script in $VENV/bin"

mkdir -p "$BIN"
ln -sfn /usr/bin/electrum "$BIN/electrum"
ln -sfn /usr/bin/python3 "$BIN/python3"
ln -sfn "$server" "$BIN/electrumx_server"
say "electrum $v, $("$VENV/bin/pip" show "$EX_PACKAGE" 2>/dev/null | sed -n 's/^Version: /e-x /p'), provisioned in $(( $(date +%s) - start )) s"
echo "$BIN"
