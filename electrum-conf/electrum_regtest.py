#!/usr/bin/python3
"""Runs Debian's Electrum 4.3.4 with trampoline nodes known on regtest.

Electrum in trampoline mode (gossip off) pays a recipient whose invoice does
not advertise trampoline support through two trampolines, the second taken
from a hardcoded list (``electrum/trampoline.py``, ``hardcoded_trampoline_nodes``)
that is empty on regtest. Its unit tests fill
``electrum.trampoline._TRAMPOLINE_NODES_UNITTESTS`` instead; this wrapper does
the same from the environment, then runs ``/usr/bin/electrum`` unchanged:

    ELECTRUM_REGTEST_TRAMPOLINES=<pubkey hex>@<host>:<port>[,...] \
    ELECTRUM_REGTEST_FEERATE=<sat per kvB> \
        /usr/bin/python3 electrum_regtest.py --regtest -D DIR daemon

On regtest Electrum uses one hardcoded fee rate for everything,
``simple_config.FEERATE_REGTEST_HARDCODED`` (180,000 sat/kvB, "for eclair
compat"), which makes every HTLC below about 30,000 sat dust on its
commitments; ``ELECTRUM_REGTEST_FEERATE`` replaces it (both its on-chain fee
rate and, divided by 4, its channels' sat/kw).

Run it with Debian's /usr/bin/python3: Electrum's modules are installed for it
only.
"""

import os
import runpy
import sys

ELECTRUM = "/usr/bin/electrum"
ENV = "ELECTRUM_REGTEST_TRAMPOLINES"
FEERATE_ENV = "ELECTRUM_REGTEST_FEERATE"


def parse_trampolines(spec):
    """Parses ``pubkey@host:port`` entries separated by commas."""
    from electrum.lnutil import LNPeerAddr

    nodes = {}
    for index, entry in enumerate(e.strip() for e in spec.split(",")):
        if not entry:
            continue
        pubkey, at, address = entry.partition("@")
        host, colon, port = address.rpartition(":")
        if not (at and colon and host and port.isdigit()):
            sys.exit(f"{ENV}: {entry!r} is not <pubkey hex>@<host>:<port>")
        try:
            key = bytes.fromhex(pubkey)
        except ValueError:
            sys.exit(f"{ENV}: {pubkey!r} is not hex")
        nodes[f"regtest trampoline {index}"] = LNPeerAddr(host=host, port=int(port), pubkey=key)
    return nodes


def main():
    from electrum import simple_config, trampoline

    trampoline._TRAMPOLINE_NODES_UNITTESTS.update(parse_trampolines(os.environ.get(ENV, "")))
    feerate = os.environ.get(FEERATE_ENV, "")
    if feerate:
        if not feerate.isdigit():
            sys.exit(f"{FEERATE_ENV}: {feerate!r} is not a whole number of sat/kvB")
        simple_config.FEERATE_REGTEST_HARDCODED = int(feerate)
    sys.argv[0] = ELECTRUM
    runpy.run_path(ELECTRUM, run_name="__main__")


if __name__ == "__main__":
    main()
