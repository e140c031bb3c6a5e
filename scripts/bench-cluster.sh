# bench-cluster.sh: sourced by the benchmark scripts (bench-peers.sh,
# bench-memory.sh, big-messages.sh); not run on its own.
#
# start_cluster PASSWORD starts scripts/run-local.sh's three-node cluster in
# $WORK/raftmail with $BIN, demo@example.test's password PASSWORD, and DNS
# sent to a loopback port where nothing answers (SPF/DKIM/DMARC end in
# temperror, nothing leaves the machine). It waits until the cluster serves
# and sets runlocal_pid (run-local.sh; TERM stops the nodes) and node_pids
# (the three `raftmail serve` processes). Its log is $WORK/run-local.log.

start_cluster() {
	# The layout's ports are fixed: a second cluster on them (make run,
	# or another benchmark running) would be measured instead, or break.
	local n p
	for n in 1 2 3; do
		for p in 25 43 46 47 48; do
			if (exec 3<>"/dev/tcp/127.0.0.1/$((10000 + 100 * n + p))") 2>/dev/null; then
				echo "$(basename "$0"): 127.0.0.1:$((10000 + 100 * n + p)) is taken: another cluster on make run's ports (make run, or another benchmark) is running" >&2
				exit 1
			fi
		done
	done
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

# applied_index N: node N's applied index, from its /healthz (no token,
# no scan).
applied_index() {
	curl -s --max-time 5 "http://127.0.0.1:$((10000 + 100 * $1 + 48))/healthz" |
		grep -o '"applied_index": *[0-9]*' | grep -o '[0-9]*$' || echo '?'
}

# missing_blobs N: how many blobs node N's metadata references that it
# does not hold, from its /metrics.
missing_blobs() {
	curl -s --max-time 5 "http://127.0.0.1:$((10000 + 100 * $1 + 48))/metrics" |
		awk '/^raftmail_blobs_missing[{ ]/ { print $NF; found = 1 } END { if (!found) print "?" }'
}

# wait_settled [TIMEOUT_S]: waits until the three nodes have applied the
# same index and none misses a blob, twice in a row 0.1 s apart (after a
# workload: every message is on every node). Returns 1 after TIMEOUT_S
# (default 300) seconds.
wait_settled() {
	local deadline=$((SECONDS + ${1:-300})) prev="" cur a b c
	command -v curl >/dev/null || {
		echo "$(basename "$0"): needs curl (apt-get install curl)" >&2
		exit 1
	}
	while [ $SECONDS -lt $deadline ]; do
		a=$(applied_index 1) b=$(applied_index 2) c=$(applied_index 3)
		cur="$a $b $c"
		if [[ $a =~ ^[0-9]+$ ]] && [ "$a" = "$b" ] && [ "$b" = "$c" ]; then
			cur+=" missing $(missing_blobs 1) $(missing_blobs 2) $(missing_blobs 3)"
			if [ "$cur" = "$prev" ] && [ "${cur#* missing }" = "0 0 0" ]; then
				return 0
			fi
		fi
		prev=$cur
		sleep 0.1
	done
	echo "$(basename "$0"): the nodes did not settle in time: $cur" >&2
	return 1
}
