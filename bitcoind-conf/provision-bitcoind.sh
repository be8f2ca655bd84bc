#!/usr/bin/env bash
# Provisions bitcoind and bitcoin-cli for regtest use, printing the directory
# that holds them on the last line of stdout.
#
# Order of preference:
#   1. $BITCOIND_EXE, when it points to an executable bitcoind;
#   2. the cache ($LDK_TRAMPOLINE_CACHE, default $HOME/.cache/ldk-trampoline);
#   3. a build from Bitcoin Core's source as vendored in the crates.io crate
#      libbitcoinkernel-sys, installed into the cache for every later run.
#
# Debian ships no bitcoind and nothing may be downloaded from outside the
# package registries, hence the build from the crate's vendored source.
set -euo pipefail

CRATE=libbitcoinkernel-sys
CRATE_VERSION=0.4.1
CACHE_ROOT="${LDK_TRAMPOLINE_CACHE:-$HOME/.cache/ldk-trampoline}"
INSTALL_DIR="$CACHE_ROOT/bitcoind-$CRATE_VERSION/bin"
JOBS="${BITCOIND_BUILD_JOBS:-$(nproc)}"

say() { echo "provision-bitcoind: $*" >&2; }
die() { say "error: $*"; exit 1; }

if [[ -n "${BITCOIND_EXE:-}" ]]; then
    [[ -x "$BITCOIND_EXE" ]] || die "BITCOIND_EXE=$BITCOIND_EXE is not an executable file"
    say "using BITCOIND_EXE=$BITCOIND_EXE"
    dirname "$BITCOIND_EXE"
    exit 0
fi

if [[ -x "$INSTALL_DIR/bitcoind" && -x "$INSTALL_DIR/bitcoin-cli" ]]; then
    say "using cached $INSTALL_DIR/bitcoind"
    echo "$INSTALL_DIR"
    exit 0
fi

mkdir -p "$CACHE_ROOT"
# One build at a time: parallel test processes wait for the first one.
exec 9>"$CACHE_ROOT/provision.lock"
say "waiting for the provisioning lock ($CACHE_ROOT/provision.lock)"
flock 9
if [[ -x "$INSTALL_DIR/bitcoind" && -x "$INSTALL_DIR/bitcoin-cli" ]]; then
    say "another process built it meanwhile: $INSTALL_DIR"
    echo "$INSTALL_DIR"
    exit 0
fi

start=$(date +%s)
need_pkgs=()
for pkg in cmake libboost-dev libevent-dev pkg-config g++ make; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need_pkgs+=("$pkg")
done
if ((${#need_pkgs[@]})); then
    say "installing Debian packages: ${need_pkgs[*]}"
    SUDO=""
    [[ $(id -u) -eq 0 ]] || SUDO="sudo"
    $SUDO apt-get update -qq >&2 || die "apt-get update failed"
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_pkgs[@]}" >&2 \
        || die "apt-get install ${need_pkgs[*]} failed"
fi

WORK="$CACHE_ROOT/build-$CRATE_VERSION"
SRC="$WORK/$CRATE-$CRATE_VERSION"
if [[ ! -d "$SRC/bitcoin" ]]; then
    say "fetching $CRATE $CRATE_VERSION from crates.io with cargo"
    rm -rf "$WORK"
    mkdir -p "$WORK/fetch/src"
    cat >"$WORK/fetch/Cargo.toml" <<TOML
[package]
name = "bitcoind-source-fetch"
version = "0.0.0"
edition = "2021"
[dependencies]
$CRATE = "=$CRATE_VERSION"
TOML
    : >"$WORK/fetch/src/lib.rs"
    (cd "$WORK/fetch" && cargo fetch --quiet >&2) || die "cargo fetch of $CRATE $CRATE_VERSION failed"
    crate_file=$(find "${CARGO_HOME:-$HOME/.cargo}/registry/cache" -name "$CRATE-$CRATE_VERSION.crate" | head -n1)
    [[ -n "$crate_file" ]] || die "cargo fetched $CRATE but its .crate file is not in the registry cache"
    tar -xzf "$crate_file" -C "$WORK" || die "cannot unpack $crate_file"
    [[ -d "$SRC/bitcoin" ]] || die "$CRATE $CRATE_VERSION has no bitcoin/ source directory"
fi

say "building bitcoind and bitcoin-cli with $JOBS jobs (about 7 minutes on 2 cores)"
cmake -S "$SRC/bitcoin" -B "$WORK/build" \
    -DCMAKE_BUILD_TYPE=Release \
    -DWITH_EMBEDDED_ASMAP=OFF -DENABLE_WALLET=OFF -DBUILD_DAEMON=ON -DBUILD_CLI=ON \
    -DBUILD_TESTS=OFF -DBUILD_KERNEL_LIB=OFF -DBUILD_BENCH=OFF -DBUILD_FUZZ_BINARY=OFF \
    -DBUILD_GUI=OFF -DBUILD_TX=OFF -DBUILD_UTIL=OFF -DBUILD_WALLET_TOOL=OFF \
    -DENABLE_IPC=OFF -DWITH_ZMQ=OFF -DWITH_USDT=OFF >"$WORK/cmake-configure.log" 2>&1 \
    || { tail -n 30 "$WORK/cmake-configure.log" >&2; die "cmake configure failed (log: $WORK/cmake-configure.log)"; }
cmake --build "$WORK/build" -j "$JOBS" --target bitcoind bitcoin-cli >"$WORK/cmake-build.log" 2>&1 \
    || { tail -n 30 "$WORK/cmake-build.log" >&2; die "cmake build failed (log: $WORK/cmake-build.log)"; }

mkdir -p "$INSTALL_DIR"
for exe in bitcoind bitcoin-cli; do
    path=$(find "$WORK/build" -type f -name "$exe" -perm -u+x | head -n1)
    [[ -n "$path" ]] || die "the build produced no $exe"
    install -m 755 "$path" "$INSTALL_DIR/$exe"
done
"$INSTALL_DIR/bitcoind" -version | head -n1 >&2
say "built and cached in $(( $(date +%s) - start )) s: $INSTALL_DIR"
echo "$INSTALL_DIR"
