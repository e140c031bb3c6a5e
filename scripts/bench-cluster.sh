# bench-cluster.sh: sourced by the benchmark scripts (bench-peers.sh,
# bench-memory.sh); not run on its own.
#
# start_cluster PASSWORD starts scripts/run-local.sh's three-node cluster in
# $WORK/raftmail with $BIN, demo@example.test's password PASSWORD, and DNS
# sent to a loopback port where nothing answers (SPF/DKIM/DMARC end in
# temperror, nothing leaves the machine). It waits until the cluster serves
# and sets runlocal_pid (run-local.sh; TERM stops the nodes) and node_pids
# (the three `raftmail serve` processes). Its log is $WORK/run-local.log.

start_cluster() {
	RAFTMAIL_RUN_DIR=$WORK/raftmail RAFTMAIL_DEMO_PASSWORD=$1 RAFTMAIL_DNS_RESOLVER=127.0.0.1:9 \
		RAFTMAIL_BIN=$BIN bash scripts/run-local.sh >"$WORK/run-local.log" 2>&1 &
	runlocal_pid=$!
	for _ in $(seq 1 300); do
		grep -q '^Raftmail is running' "$WORK/run-local.log" && break
		kill -0 "$runlocal_pid" 2>/dev/null || {
			cat "$WORK/run-local.log" >&2
			exit 1
		}
		sleep 0.2
	done
	grep -q '^Raftmail is running' "$WORK/run-local.log" || {
		echo "$(basename "$0"): the cluster did not come up; see $WORK/run-local.log" >&2
		exit 1
	}
	node_pids=()
	for n in 1 2 3; do
		node_pids+=("$(pgrep -P "$runlocal_pid" -f -- "serve --data-dir $WORK/raftmail/node$n " | head -n1)")
	done
}
