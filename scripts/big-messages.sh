#!/usr/bin/env bash
# big-messages.sh: each node's memory while a three-node cluster accepts a
# few big messages at once (make bench-big).
#
# Starts a fresh cluster with scripts/run-local.sh in a temporary directory
# (scripts/bench-cluster.sh), sends BIG_COUNT messages of BIG_SIZE, each with
# a different body (`raftmail bench smtp --unique`: base64 of pseudo-random
# bytes, so neither de-duplication nor compression hides the cost), over
# BIG_CONCURRENCY connections to the MX port of node BIG_NODES, without AUTH;
# waits until every node has applied everything and holds every body; and
# prints one line per node:
#
#   VmHWM      the node's peak resident memory (/proc/PID/status, read after
#              the run)
#   sampled    the largest VmRSS of samples every BIG_INTERVAL, and when
#              (seconds from the first sample, taken just before the first
#              connection; `raftmail bench procs`)
#   250 4xx 5xx conn  the replies the node gave (conn: no reply)
#   elapsed    from the start to the node's last reply
#
# and under the table each node's VmRSS over time, drawn from the samples
# (every sample is in samples.tsv).
#
# It writes nothing into docs. Not part of make test.
#
#   BIG_SIZE=45MiB  BIG_COUNT=8  BIG_CONCURRENCY=8
#   BIG_NODES=1        the nodes whose MX port is sent to ("1 2 3": connection
#                      i goes to the i-th, round robin)
#   BIG_INTERVAL=100ms between VmRSS samples
#   BIG_TIMEOUT=5m     bound on each wait for a reply
#   BIG_KEEP=1         keep the temporary directory (node logs, samples.tsv)
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
# shellcheck source=scripts/bench-cluster.sh
. scripts/bench-cluster.sh
SIZE=${BIG_SIZE:-45MiB}
COUNT=${BIG_COUNT:-8}
CONC=${BIG_CONCURRENCY:-8}
NODES=${BIG_NODES:-1}
INTERVAL=${BIG_INTERVAL:-100ms}
TIMEOUT=${BIG_TIMEOUT:-5m}
BIN=$ROOT/bin/raftmail
PASS=big-messages-$$-$RANDOM
port() { echo $((10000 + 100 * $1 + $2)); }
export PATH=$PATH:/usr/local/go/bin

for n in $NODES; do
	case $n in
	1 | 2 | 3) ;;
	*)
		echo "big-messages: BIG_NODES holds node numbers 1, 2, 3, not '$n'" >&2
		exit 2
		;;
	esac
done
command -v python3 >/dev/null || {
	echo "big-messages: needs python3 for its table" >&2
	exit 1
}

WORK=$(mktemp -d /tmp/raftmail-big-messages.XXXXXX)
runlocal_pid=
watch_pid=
cleanup() {
	set +e
	trap - EXIT INT TERM
	[ -n "$watch_pid" ] && kill -TERM "$watch_pid" 2>/dev/null && wait "$watch_pid" 2>/dev/null
	if [ -n "$runlocal_pid" ]; then
		kill -TERM "$runlocal_pid" 2>/dev/null
		wait "$runlocal_pid" 2>/dev/null
	fi
	if [ -n "${BIG_KEEP:-}" ]; then
		echo "kept $WORK"
	else
		rm -rf "$WORK"
	fi
}
trap cleanup EXIT INT TERM

echo ">> build"
make -s build
echo ">> a fresh three-node cluster in $WORK"
start_cluster "$PASS"
wait_settled 60

groups=()
for n in 1 2 3; do groups+=(--group "node$n=pid:${node_pids[$((n - 1))]}"); done
"$BIN" bench procs "${groups[@]}" --interval "$INTERVAL" --samples "$WORK/samples.tsv" \
	--ready "$WORK/watch.ready" --json >"$WORK/procs.json" &
watch_pid=$!
for _ in $(seq 1 100); do
	[ -e "$WORK/watch.ready" ] && break
	sleep 0.05
done

addrs=()
for n in $NODES; do addrs+=(--addr "127.0.0.1:$(port "$n" 25)"); done
echo ">> $COUNT messages of $SIZE (unique bodies) over $CONC connections to node $NODES (MX, no AUTH)"
start=$SECONDS
smtp_ok=1
"$BIN" bench smtp "${addrs[@]}" --to demo@example.test --messages "$COUNT" --size "$SIZE" \
	--concurrency "$CONC" --unique --timeout "$TIMEOUT" --json >"$WORK/smtp.json" || smtp_ok=0
echo ">> waiting until every node has applied everything and holds every body"
wait_settled 600 || true
settled=$((SECONDS - start))
sleep 1
kill -TERM "$watch_pid"
wait "$watch_pid" || true
watch_pid=

hwm=() roles=()
for n in 1 2 3; do
	# A node that died (killed for lack of memory) shows 0 and no role.
	hwm+=("$(awk '/^VmHWM:/ { print $2 }' "/proc/${node_pids[$((n - 1))]}/status" 2>/dev/null || echo 0)")
	roles+=("$(curl -s --max-time 5 "http://127.0.0.1:$(port "$n" 48)/healthz" | grep -o '"role": *"[A-Za-z]*"' | grep -o '[A-Za-z]*"$' | tr -d '"' || true)")
done
[ $smtp_ok = 1 ] || echo "big-messages: raftmail bench smtp could not run; see above" >&2

echo
python3 - "$WORK/smtp.json" "$WORK/procs.json" "$settled" "${hwm[@]}" "${roles[@]}" "$(port 1 25) $(port 2 25) $(port 3 25)" "$WORK/samples.tsv" <<'PY'
import json, sys

smtp_file, procs_file, settled = sys.argv[1], sys.argv[2], sys.argv[3]
hwm = [int(v) / 1024 for v in sys.argv[4:7]]
roles = sys.argv[7:10]
mx_ports = sys.argv[10].split()
try:
    smtp = json.load(open(smtp_file))
except (OSError, ValueError):
    smtp = {"per_addr": [], "messages": 0, "size_bytes": 0, "concurrency": 0, "elapsed_s": 0, "replies": {}}
procs = {g["name"]: g for g in json.load(open(procs_file))["groups"]}

def counts(replies):
    c = {"250": 0, "4xx": 0, "5xx": 0, "conn": 0}
    for code, n in replies.items():
        if code == "250":
            c["250"] += n
        elif code.startswith("4"):
            c["4xx"] += n
        elif code.startswith("5"):
            c["5xx"] += n
        else:
            c["conn"] += n
    return c

print(f"{'node':<6} {'raft role':<10} {'VmHWM':>10} {'sampled peak (at)':>22} {'250':>4} {'4xx':>4} {'5xx':>4} {'conn':>4} {'elapsed':>9}")
for i in range(3):
    name = f"node{i + 1}"
    g = procs.get(name, {})
    per = [a for a in smtp.get("per_addr") or [] if a["addr"].endswith(":" + mx_ports[i])]
    if per:
        c = counts(per[0]["replies"])
        rep = f"{c['250']:>4} {c['4xx']:>4} {c['5xx']:>4} {c['conn']:>4} {per[0]['elapsed_s']:>8.1f}s"
    else:
        rep = f"{'-':>4} {'-':>4} {'-':>4} {'-':>4} {'-':>9}"
    sampled = f"{g.get('peak_rss_mib', 0):,.0f} MiB ({g.get('peak_rss_at_s', 0):.1f}s)"
    print(f"{name:<6} {roles[i] or '?':<10} {hwm[i]:>6,.0f} MiB {sampled:>22} {rep}")
replies = smtp.get("replies") or {}
c = counts(replies)
codes = ", ".join(f"{k} × {v}" for k, v in sorted(replies.items()) if k != "250")
print(f"\n{smtp['messages']} messages of {smtp['size_bytes'] / 2**20:.1f} MiB, unique bodies, {smtp['concurrency']} connections:"
      f" {c['250']} × 250, {c['4xx']} × 4xx, {c['5xx']} × 5xx, {c['conn']} without reply" + (f" ({codes})" if codes else "") +
      f", in {smtp['elapsed_s']:.1f}s; every node settled {settled}s after the start")

# VmRSS over time: one column per slice of the run (its largest sample),
# one height scale for all nodes.
rows = [line.split("\t") for line in open(sys.argv[11]).read().split("\n")[1:] if line]
if len(rows) > 1:
    t_end = float(rows[-1][0])
    width = 60
    top = max(float(v) for r in rows for v in r[1:4]) or 1
    print(f"\nVmRSS over {t_end:.1f}s (one column = {t_end / width:.2f}s; full height = {top:,.0f} MiB)")
    bars = " ▁▂▃▄▅▆▇█"
    for i in range(3):
        cols = [0.0] * width
        for r in rows:
            c = min(int(float(r[0]) / t_end * width), width - 1) if t_end > 0 else 0
            cols[c] = max(cols[c], float(r[i + 1]))
        # a slice without a sample shows the one before it
        for c in range(1, width):
            if cols[c] == 0:
                cols[c] = cols[c - 1]
        print(f"node{i + 1}  " + "".join(bars[round(v / top * 8)] for v in cols))
PY
