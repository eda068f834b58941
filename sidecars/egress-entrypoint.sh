#!/bin/sh
# egress: the proxy the agent talks to. mitmdump with the bottle's addon,
# forwarding upstream to pipelock.
#
# Configured by environment; the defaults are the sidecar image's layout:
#   EGRESS_LISTEN_HOST  address to listen on             (0.0.0.0)
#   EGRESS_LISTEN_PORT  port to listen on                (8080)
#   EGRESS_UPSTREAM     upstream proxy URL, pipelock     (http://127.0.0.1:8888)
#                       "none": no upstream, mitmdump's regular mode (warned)
#   EGRESS_ADDON        mitmdump addon script            (/app/claude_bottle/egress/addon.py)
#   EGRESS_CONFDIR      mitmproxy confdir (CA and certs) (/home/mitmproxy/.mitmproxy)
# Arguments are passed on to mitmdump after these options.
#
# `egress-entrypoint.sh --ready` is the daemon's readiness probe instead: exit 0
# once the listener accepts a connection. sidecar-init runs exec probes with the
# daemon's environment, so a port or address overridden with
# `docker run -e EGRESS_LISTEN_PORT=...` is the one probed.
#
# It ends in exec so that mitmdump is the daemon sidecar-init started: it gets
# the stop signal directly and its exit status is the daemon's.
set -eu

listen_host=${EGRESS_LISTEN_HOST:-0.0.0.0}
listen_port=${EGRESS_LISTEN_PORT:-8080}
# Empty takes the default too: Compose's `EGRESS_UPSTREAM: ${X}` with X unset
# gives an empty value, and traffic must not skip pipelock, the firewall, by
# accident. Running without it takes an explicit "none".
upstream=${EGRESS_UPSTREAM:-http://127.0.0.1:8888}
addon=${EGRESS_ADDON:-/app/claude_bottle/egress/addon.py}
confdir=${EGRESS_CONFDIR:-/home/mitmproxy/.mitmproxy}

if [ "${1-}" = "--ready" ]; then
	# A wildcard listen address is reached on loopback. Quiet when not ready yet:
	# sidecar-init retries, and a traceback per attempt would only be noise.
	case ${listen_host} in
	0.0.0.0 | "") probe_host=127.0.0.1 ;;
	:: | "[::]") probe_host=::1 ;;
	*) probe_host=${listen_host} ;;
	esac
	exec python3 -c '
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=1).close()
except OSError:
    sys.exit(1)
' "${probe_host}" "${listen_port}"
fi

# The addon is the egress policy: refuse to run without it rather than proxy
# everything unfiltered.
if [ ! -r "${addon}" ]; then
	echo "egress-entrypoint: addon ${addon} is missing or unreadable; set EGRESS_ADDON or fix the bottle build context" >&2
	exit 1
fi

if [ "${upstream}" = none ]; then
	echo "egress-entrypoint: EGRESS_UPSTREAM=none: no upstream proxy, egress traffic does not pass pipelock" >&2
else
	set -- --mode "upstream:${upstream}" "$@"
fi

exec mitmdump \
	--listen-host "${listen_host}" \
	--listen-port "${listen_port}" \
	--set "confdir=${confdir}" \
	--scripts "${addon}" \
	"$@"
