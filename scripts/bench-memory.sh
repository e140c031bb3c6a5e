#!/usr/bin/env bash
# bench-memory.sh: memory of each node of a three-node cluster holding many
# messages (make bench-memory).
#
# Starts a fresh cluster with scripts/run-local.sh in a temporary directory,
# delivers MEM_MESSAGES (default 100,000) messages of MEM_SIZE (10KiB) to
# demo@example.test over SMTP through all three nodes, waits until every node
# has applied everything, and prints each node's resident memory (VmRSS) and
# peak (VmHWM):
#
#   loaded    after the load, idle for MEM_REST seconds (default 30)
#   restarted after a restart of every node, one SELECT of the full INBOX
#             over IMAP on node 1 (python3), idle for MEM_REST seconds
#
# plus the data directory sizes. Not part of make test.
#
#   MEM_MESSAGES=100000  MEM_SIZE=10KiB  MEM_REST=30  MEM_KEEP=1 (keep the directory)
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
# shellcheck source=scripts/bench-cluster.sh
. scripts/bench-cluster.sh
N=${MEM_MESSAGES:-100000}
SIZE=${MEM_SIZE:-10KiB}
REST=${MEM_REST:-30}
BIN=$ROOT/bin/raftmail
PASS=bench-memory-$$-$RANDOM
WORK=$(mktemp -d /tmp/raftmail-bench-memory.XXXXXX)
port() { echo $((10000 + 100 * $1 + $2)); }
export PATH=$PATH:/usr/local/go/bin

runlocal_pid=
cleanup() {
	set +e
	trap - EXIT INT TERM
	if [ -n "$runlocal_pid" ]; then
		kill -TERM "$runlocal_pid" 2>/dev/null
		wait "$runlocal_pid" 2>/dev/null
	fi
	if [ -n "${MEM_KEEP:-}" ]; then
		echo "kept $WORK"
	else
		rm -rf "$WORK"
	fi
}
trap cleanup EXIT INT TERM

stop_cluster() {
	kill -TERM "$runlocal_pid"
	wait "$runlocal_pid" 2>/dev/null || true
	runlocal_pid=
	: >"$WORK/run-local.log"
}

# wait_converged: every node reports the same applied index twice in a row.
wait_converged() {
	local prev="" cur
	for _ in $(seq 1 600); do
		cur=$("$BIN" status --json --data-dir "$WORK/raftmail/node1" --admin-addr "127.0.0.1:$(port 1 48)" 2>/dev/null |
			grep -o '"applied_index": [0-9]*' | sort -u | tr '\n' ' ' || true)
		if [ -n "$cur" ] && [ "$(wc -w <<<"$cur")" = 2 ] && [ "$cur" = "$prev" ]; then
			return 0
		fi
		prev=$cur
		sleep 1
	done
	echo "bench-memory: the nodes did not converge" >&2
	exit 1
}

report() { # report LABEL
	local n p
	for n in 1 2 3; do
		p=${node_pids[$((n - 1))]}
		printf '%-10s node%d  RSS %6d MiB  peak %6d MiB\n' "$1" "$n" \
			$(($(awk '/^VmRSS/ {print $2}' "/proc/$p/status") / 1024)) \
			$(($(awk '/^VmHWM/ {print $2}' "/proc/$p/status") / 1024))
	done
}

echo ">> build"
make -s build
echo ">> a fresh three-node cluster in $WORK"
start_cluster "$PASS"
echo ">> delivering $N messages of $SIZE"
"$BIN" bench smtp --quiet --addr "127.0.0.1:$(port 1 25)" --addr "127.0.0.1:$(port 2 25)" --addr "127.0.0.1:$(port 3 25)" \
	--to demo@example.test --messages "$N" --size "$SIZE" --concurrency 32
wait_converged
echo ">> idle for ${REST}s"
sleep "$REST"
report loaded
echo ">> restarting every node"
stop_cluster
start_cluster "$PASS"
wait_converged
python3 - "$(port 1 43)" "$PASS" <<'PY'
import imaplib, ssl, sys, time
m = imaplib.IMAP4("127.0.0.1", int(sys.argv[1]))
m.starttls(ssl_context=ssl._create_unverified_context())
m.login("demo@example.test", sys.argv[2])
t = time.monotonic()
typ, data = m.select("INBOX")
print(f"SELECT INBOX on node1: {data[0].decode()} messages in {(time.monotonic() - t) * 1000:.0f} ms")
m.logout()
PY
sleep "$REST"
report restarted
for n in 1 2 3; do
	printf 'node%d data: store %s, raft log %s\n' "$n" \
		"$(du -sh "$WORK/raftmail/node$n/store" | cut -f1)" "$(du -sh "$WORK/raftmail/node$n/raft" | cut -f1)"
done
