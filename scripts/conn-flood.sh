#!/usr/bin/env bash
# conn-flood.sh: one node of a three-node cluster under a flood of idle IMAP
# connections (make conn-flood). Not part of make test.
#
# Starts scripts/run-local.sh's cluster in a temporary directory (with
# scripts/bench-cluster.sh's start_cluster) with no address exempt from the
# per-IP caps (RAFTMAIL_CONN_LIMIT_EXEMPT=none) and the default caps, then
# runs scripts/conn-flood.py in up to two phases against node 1's IMAP port:
#
#   1. FLOOD_CONNS (20,000) connections from one address, 127.0.0.9: the
#      per-address cap (50) holds; the rest are answered with BYE.
#   2. FLOOD_CONNS connections spread over FLOOD_SOURCES (200) addresses,
#      127.0.1.1 and up: the node cap (8000) holds. FLOOD_SOURCES=0 skips it.
#
# Each phase holds the connections the node greeted (the flooding client
# sends a NOOP every 20 s; the node's 60 s pre-auth timeout ends them) and,
# meanwhile, from 127.0.0.1: sends a message to node 1 over SMTP, logs in
# over IMAP and finds it (phase 2: expects the node-cap BYE instead, the
# node being full), checks that `raftmail status` shows three reachable
# voters and a leader, counts node 1's open descriptors, and that no node
# log says "too many open files". Then it prints the figures.
#
# Each phase holds its connections FLOOD_HOLD seconds (default 70) after
# the flood, long enough for the 60 s pre-auth timeout to end every one of
# them, and reports how they ended and what node 1 holds afterwards.
#
#   FLOOD_CONNS=20000  FLOOD_SOURCES=200  FLOOD_PARALLEL=500  FLOOD_HOLD=70
#   FLOOD_KEEP=1 (keep the directory)
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
# shellcheck source=scripts/bench-cluster.sh
. scripts/bench-cluster.sh
CONNS=${FLOOD_CONNS:-20000}
SOURCES=${FLOOD_SOURCES:-200}
PARALLEL=${FLOOD_PARALLEL:-500}
HOLD=${FLOOD_HOLD:-70}
BIN=$ROOT/bin/raftmail
PASS=conn-flood-$$-$RANDOM
WORK=$(mktemp -d /tmp/raftmail-conn-flood.XXXXXX)
port() { echo $((10000 + 100 * $1 + $2)); }
export PATH=$PATH:/usr/local/go/bin

runlocal_pid=
flood_pid=
cleanup() {
	set +e
	trap - EXIT INT TERM
	[ -n "$flood_pid" ] && kill "$flood_pid" 2>/dev/null && wait "$flood_pid" 2>/dev/null
	if [ -n "$runlocal_pid" ]; then
		kill -TERM "$runlocal_pid" 2>/dev/null
		wait "$runlocal_pid" 2>/dev/null
	fi
	if [ -n "${FLOOD_KEEP:-}" ]; then
		echo "kept $WORK"
	else
		rm -rf "$WORK"
	fi
}
trap cleanup EXIT INT TERM

failures=0
check() { # check WHAT COMMAND...: run COMMAND, print WHAT and its outcome
	local what=$1 out
	shift
	if out=$("$@" 2>&1); then
		printf '  ok    %-34s %s\n' "$what" "$(tail -n1 <<<"$out")"
	else
		printf '  FAIL  %-34s %s\n' "$what" "$(tail -n1 <<<"$out")"
		failures=$((failures + 1))
	fi
}

healthy() { # three reachable voters, one leader, as node 1 sees them
	"$BIN" status --json --data-dir "$WORK/raftmail/node1" --admin-addr "127.0.0.1:$(port 1 48)" |
		python3 -c '
import json, sys
st = json.load(sys.stdin)
ok = len(st) == 3 and all(n["reachable"] and n["voter"] for n in st) and sum(n.get("role") == "Leader" for n in st) == 1
print(", ".join("%s %s lag %d" % (n["name"], n.get("role") or "unreachable", n.get("lag", 0)) for n in st))
sys.exit(0 if ok else 1)'
}

no_emfile() {
	local n total=0
	for n in 1 2 3; do
		total=$((total + $(grep -c 'too many open files' "$WORK/raftmail/node$n.log" || true)))
	done
	echo "grep -c 'too many open files' node*.log: $total"
	[ "$total" = 0 ]
}

imap_refused_node_cap() {
	python3 - "$(port 1 43)" <<'PY'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=30)
line = s.makefile("rb").readline().decode().rstrip("\r\n")
print("IMAP: " + line)
sys.exit(0 if line == "* BYE [UNAVAILABLE] Too many connections to this server, try again later" else 1)
PY
}

metrics() { # node 1's connection figures
	curl -s "http://127.0.0.1:$(port 1 48)/metrics" | grep -E '^raftmail_connections_(open|refused_total)\{.*protocol="imap"' | sed 's/^/    /'
}

# phase NAME SOURCES EXPECT_IMAP: one flood, held while the checks run.
phase() {
	local name=$1 srcs=$2 expect_imap=$3 release=$WORK/release-$1 out=$WORK/flood-$1.out held_at
	echo
	echo "== $name: $CONNS connections to node 1's IMAP port (127.0.0.1:$(port 1 43)) from $srcs"
	: >"$out"
	python3 scripts/conn-flood.py flood 127.0.0.1 "$(port 1 43)" --conns "$CONNS" --sources "$srcs" \
		--parallel "$PARALLEL" --release "$release" >"$out" 2>&1 &
	flood_pid=$!
	while ! grep -q '^HOLDING' "$out"; do
		if ! kill -0 "$flood_pid" 2>/dev/null; then
			cat "$out" >&2
			exit 1
		fi
		sleep 0.2
	done
	held_at=$SECONDS
	sed -n 's/^FLOOD /  flood: /p' "$out"
	node1_figures
	metrics
	echo "  while the flood is held, from 127.0.0.1:"
	local subject="flood check $name $$"
	check "SMTP to node 1 (MX)" python3 scripts/conn-flood.py smtp 127.0.0.1 "$(port 1 25)" demo@example.test "$subject"
	if [ "$expect_imap" = serve ]; then
		check "IMAP login on node 1" python3 scripts/conn-flood.py imap 127.0.0.1 "$(port 1 43)" demo@example.test "$PASS" "$subject"
	else
		check "IMAP on node 1 (node cap full)" imap_refused_node_cap
	fi
	check "IMAP login on node 2" python3 scripts/conn-flood.py imap 127.0.0.1 "$(port 2 43)" demo@example.test "$PASS" "$subject"
	check "raftmail status" healthy
	check "no EMFILE in the node logs" no_emfile
	if [ $((SECONDS - held_at)) -lt "$HOLD" ]; then
		sleep $((HOLD - (SECONDS - held_at)))
	fi
	echo "  after holding ${HOLD}s:"
	node1_figures
	metrics
	touch "$release"
	wait "$flood_pid"
	flood_pid=
	sed -n 's/^RELEASED /  released: /p' "$out"
}

node1_figures() {
	local p=${node_pids[0]}
	echo "  node 1 holds $(find "/proc/$p/fd" -mindepth 1 -maxdepth 1 | wc -l) descriptors (RLIMIT_NOFILE $(awk '/Max open files/ {print $4}' "/proc/$p/limits")), RSS $(($(awk '/^VmRSS/ {print $2}' "/proc/$p/status") / 1024)) MiB (peak $(($(awk '/^VmHWM/ {print $2}' "/proc/$p/status") / 1024)) MiB); its IMAP figures:"
}

echo "conn-flood: building bin/raftmail"
make -s build
echo "conn-flood: starting a three-node cluster in $WORK (log: $WORK/run-local.log)"
export RAFTMAIL_CONN_LIMIT_EXEMPT=none
start_cluster "$PASS"
echo "conn-flood: node 1 is pid ${node_pids[0]}; $(grep -m1 -o 'msg="connection caps" protocol=imap[^"]*' "$WORK/raftmail/node1.log" | head -n1)"

phase one-address 127.0.0.9 serve
if [ "$SOURCES" -gt 0 ]; then
	phase many-addresses "127.0.1.1*$SOURCES" refuse
fi
echo
echo "  node 1's refusal log lines (per address: one per address and minute; node cap: one a minute): $(grep -c 'connection refused' "$WORK/raftmail/node1.log" || true)"
if [ "$failures" -gt 0 ]; then
	echo "conn-flood: $failures check(s) failed; logs in $WORK (FLOOD_KEEP=1 keeps them)" >&2
	exit 1
fi
echo "conn-flood: all checks passed"
