#!/usr/bin/env bash
# Run CMD inside a fresh, private network namespace: bridge/demo/netns-run.sh CMD [ARGS...]
#
# Why: ICE (aioice) ignores 127.0.0.1, Janus needs a non-loopback address, and tests must
# never send traffic to this machine's real interfaces. The namespace has only `lo` and one
# private interface `mc0` with 10.254.0.1/24, so every peer, Janus and the bridge started by
# CMD talk over that address and nothing can leave the namespace. The namespace disappears
# when CMD exits (no cleanup to forget, even on SIGKILL).
#
# mc0 is a dummy interface where the kernel has the module, else one end of a veth pair
# whose other end (mc1) is left without an address, so ICE gathers exactly one candidate.
# As root `unshare -n`; otherwise `unshare -rn` (a user namespace maps us to root inside).
# MICROCUE_NETNS_ADDR tells CMD (and bridge.demo.netns) it is inside and which address to use.
set -euo pipefail

NETNS_ADDR="${MICROCUE_NETNS_ADDR_WANTED:-10.254.0.1}"
NETNS_PREFIX=24
IFACE=mc0

if [ "${1:-}" != "--inside" ]; then
  if [ $# -eq 0 ]; then
    echo "usage: $0 CMD [ARGS...]" >&2; exit 2
  fi
  if ! command -v unshare >/dev/null || ! command -v ip >/dev/null; then
    echo "netns-run: needs unshare (util-linux) and ip (iproute2)" >&2; exit 2
  fi
  if [ "$(id -u)" = 0 ]; then
    exec unshare --net -- bash "$0" --inside "$@"
  fi
  exec unshare --map-root-user --net -- bash "$0" --inside "$@"
fi
shift

ip link set lo up
if ! ip link add "$IFACE" type dummy 2>/dev/null; then
  ip link add "$IFACE" type veth peer name mc1
  ip link set mc1 up
fi
ip addr add "$NETNS_ADDR/$NETNS_PREFIX" dev "$IFACE"
ip link set "$IFACE" up
# No IPv6 at all: only the one IPv4 host candidate, and no link-local chatter.
sysctl -qw net.ipv6.conf.all.disable_ipv6=1 2>/dev/null || true
sysctl -qw net.ipv6.conf.default.disable_ipv6=1 2>/dev/null || true

export MICROCUE_NETNS_ADDR="$NETNS_ADDR"
exec "$@"
