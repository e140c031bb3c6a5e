#!/usr/bin/env bash
# bench-peers.sh: Raftmail side by side with Postfix + Dovecot (make bench-peers).
#
# Starts Postfix + Dovecot on loopback with ../shared/peers/postfix-dovecot.sh
# (PEERS_SCRIPT), a fresh three-node Raftmail cluster with scripts/run-local.sh
# in a temporary directory, and runs the same `raftmail bench` workloads
# against both, A (Postfix + Dovecot) then B (Raftmail), BENCH_ROUNDS rounds
# of each workload in turn:
#
#   SMTP 2,000 x 10 KiB at concurrency 1, 16 and 64; 100 x 1 MiB at 4
#   IMAP on the resulting mailbox; 250 -> IDLE EXISTS visibility; POP3 RETR
#
# Each SMTP round is watched by `raftmail bench procs` from just before the
# client starts until the server is done with the round (Postfix's queue
# empty; every Raftmail node has applied everything and holds every body):
# CPU time per message of the whole machine and of the server's processes,
# and the peaks of the server's processes' summed VmRSS and Pss. Another
# watch spans the whole run for the servers' peak memory (VmHWM, Pss).
#
# Then it writes the side-by-side section of docs/benchmarks.md and
# docs/bench-peers.svg (`raftmail bench report`), prints the table, and
# stops everything it started. Not part of make test or CI: it needs root
# (Debian packages) and curl.
#
#   BENCH_SCALE=0.25   scale every message count (default 1; 0.1 with
#                      BENCH_ROUNDS=1 is a run of a few minutes)
#   BENCH_ROUNDS=3     rounds per workload
#   BENCH_UNIQUE=1     SMTP bodies of random base64, different in every
#                      message (default: one line of text repeated)
#   BENCH_DOC=...      the markdown file to write (default docs/benchmarks.md;
#                      empty: none), BENCH_SVG=... the chart (default
#                      docs/bench-peers.svg; empty: none)
#   BENCH_KEEP=1       keep the temporary directory (results, node logs)
#   PEERS_SCRIPT=...   the Postfix + Dovecot installer
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
# shellcheck source=scripts/bench-cluster.sh
. scripts/bench-cluster.sh
SCALE=${BENCH_SCALE:-1}
ROUNDS=${BENCH_ROUNDS:-3}
DOC=${BENCH_DOC-docs/benchmarks.md}
SVG=${BENCH_SVG-docs/bench-peers.svg}
UNIQUE=()
[ -n "${BENCH_UNIQUE:-}" ] && UNIQUE=(--unique)
PEERS_SCRIPT=${PEERS_SCRIPT:-$ROOT/../shared/peers/postfix-dovecot.sh}
if [ ! -f "$PEERS_SCRIPT" ]; then
	cat >&2 <<TXT
bench-peers: no Postfix + Dovecot installer at $PEERS_SCRIPT.
It comes with the project's shared tree (shared/peers/postfix-dovecot.sh, next
to this repository); point PEERS_SCRIPT at a copy. It installs Debian's
postfix, dovecot-imapd, dovecot-pop3d and dovecot-lmtpd and serves SMTP on
127.0.0.1:2525, IMAP on 2143 and POP3 on 2110 for user@example.test / password.
TXT
	exit 1
fi
export PATH=$PATH:/usr/local/go/bin
scaled() { awk -v n="$1" -v s="$SCALE" 'BEGIN { v = int(n * s + 0.5); print (v < 1 ? 1 : v) }'; }
N_SMALL=$(scaled 2000)
N_LARGE=$(scaled 100)
N_VIS=$(scaled 100)

WORK=$(mktemp -d /tmp/raftmail-bench-peers.XXXXXX)
RES=$WORK/results
mkdir -p "$RES"
BIN=$ROOT/bin/raftmail
RM_PASS=bench-peers-$$-$RANDOM
PEER_USER=user@example.test
PEER_PASS=password
RM_USER=demo@example.test
port() { echo $((10000 + 100 * $1 + $2)); }

runlocal_pid=
watch_pid=
run_watch_pids=()
cleanup() {
	set +e
	trap - EXIT INT TERM
	for p in $watch_pid "${run_watch_pids[@]}"; do
		kill -TERM "$p" 2>/dev/null && wait "$p" 2>/dev/null
	done
	if [ -n "$runlocal_pid" ]; then
		kill -TERM "$runlocal_pid" 2>/dev/null
		wait "$runlocal_pid" 2>/dev/null
	fi
	bash "$PEERS_SCRIPT" --stop >/dev/null 2>&1
	if [ -z "${BENCH_KEEP:-}" ]; then rm -rf "$WORK"; else echo "bench-peers: kept $WORK"; fi
}
trap cleanup EXIT INT TERM

echo ">> Postfix + Dovecot ($PEERS_SCRIPT --wipe)"
bash "$PEERS_SCRIPT" --wipe >"$WORK/peers.log" 2>&1 || {
	cat "$WORK/peers.log" >&2
	exit 1
}
echo ">> build"
make -s build

echo ">> a three-node Raftmail cluster in $WORK/raftmail"
# run-local.sh forms the cluster, adds demo@example.test and serves until
# TERM (scripts/bench-cluster.sh).
start_cluster "$RM_PASS"

# The servers' processes: Postfix + Dovecot by executable, Raftmail's
# three nodes by pid (groups of `raftmail bench procs`).
PF_PROCS=exe:/usr/lib/postfix/,exe:/usr/sbin/postfix
DC_PROCS=exe:/usr/lib/dovecot/,exe:/usr/sbin/dovecot
RM_PROCS=pid:${node_pids[0]},pid:${node_pids[1]},pid:${node_pids[2]}

# Peak memory over the whole run: every second, the sums of VmHWM and of
# Pss over each server's live processes, keeping the largest sums seen.
mkdir -p "$RES/rss"
"$BIN" bench procs --peak hwm --pss --interval 1s --json \
	--group "Postfix processes=$PF_PROCS" --group "Dovecot processes=$DC_PROCS" >"$RES/rss/a-1.json" &
run_watch_pids+=($!)
"$BIN" bench procs --peak hwm --pss --interval 1s --json \
	--group "node1=pid:${node_pids[0]}" --group "node2=pid:${node_pids[1]}" --group "node3=pid:${node_pids[2]}" >"$RES/rss/b-1.json" &
run_watch_pids+=($!)

# watch_start FILE GROUP MESSAGES: watches GROUP (NAME=SPEC,...) every
# 100 ms with `raftmail bench procs`, which writes its figures to FILE at
# watch_stop; returns once the first sample is taken.
watch_start() {
	rm -f "$WORK/watch.ready"
	"$BIN" bench procs --group "$2" --messages "$3" --pss --interval 100ms --ready "$WORK/watch.ready" --json >"$1" &
	watch_pid=$!
	for _ in $(seq 1 250); do
		[ -e "$WORK/watch.ready" ] && return 0
		sleep 0.02
	done
	echo "bench-peers: bench procs did not start" >&2
	exit 1
}
watch_stop() {
	kill -TERM "$watch_pid"
	wait "$watch_pid"
	watch_pid=
}

# drain_postfix waits until Postfix has handed everything it accepted to
# Dovecot, so that its background delivery does not run during (and slow
# down) the Raftmail round that follows.
drain_postfix() {
	for _ in $(seq 1 600); do
		[ -z "$(postqueue -j 2>/dev/null | head -c1)" ] && return 0
		sleep 0.1
	done
}

MX_ADDRS=(--addr "127.0.0.1:$(port 1 25)" --addr "127.0.0.1:$(port 2 25)" --addr "127.0.0.1:$(port 3 25)")
# workload ID TITLE [MESSAGES]: records it, then runs A and B BENCH_ROUNDS
# times. The commands are in A_ARGS and B_ARGS (arguments of `raftmail
# bench`). With MESSAGES (an SMTP workload), each round is watched until
# the server is done with it: <id>/a-<round>.procs.json.
workload() {
	local id=$1 title=$2 n=${3:-} r
	mkdir -p "$RES/$id"
	printf '%s\t%s\t%s\t%s\n' "$id" "$title" "raftmail bench ${A_ARGS[*]}" "raftmail bench ${B_ARGS[*]//$RM_PASS/PASSWORD}" >>"$RES/workloads.tsv"
	for r in $(seq 1 "$ROUNDS"); do
		echo ">> $title, round $r/$ROUNDS: Postfix + Dovecot"
		[ -n "$n" ] && watch_start "$RES/$id/a-$r.procs.json" "server processes=$PF_PROCS,$DC_PROCS" "$n"
		"$BIN" bench "${A_ARGS[@]}" --json >"$RES/$id/a-$r.json"
		drain_postfix
		[ -n "$n" ] && watch_stop
		echo ">> $title, round $r/$ROUNDS: Raftmail"
		[ -n "$n" ] && watch_start "$RES/$id/b-$r.procs.json" "server processes=$RM_PROCS" "$n"
		"$BIN" bench "${B_ARGS[@]}" --json >"$RES/$id/b-$r.json"
		if [ -n "$n" ]; then
			wait_settled
			watch_stop
		fi
	done
}

for c in 1 16 64; do
	A_ARGS=(smtp --addr 127.0.0.1:2525 --to $PEER_USER --messages "$N_SMALL" --size 10KiB --concurrency $c "${UNIQUE[@]}")
	B_ARGS=(smtp "${MX_ADDRS[@]}" --to $RM_USER --messages "$N_SMALL" --size 10KiB --concurrency $c "${UNIQUE[@]}")
	workload smtp-c$c "SMTP $N_SMALL × 10 KiB, concurrency $c" "$N_SMALL"
done
A_ARGS=(smtp --addr 127.0.0.1:2525 --to $PEER_USER --messages "$N_LARGE" --size 1MiB --concurrency 4 "${UNIQUE[@]}")
B_ARGS=(smtp "${MX_ADDRS[@]}" --to $RM_USER --messages "$N_LARGE" --size 1MiB --concurrency 4 "${UNIQUE[@]}")
workload smtp-1mib-c4 "SMTP $N_LARGE × 1 MiB, concurrency 4" "$N_LARGE"

# Postfix hands mail to Dovecot after its 250: wait until Dovecot holds
# everything Postfix accepted (the queue is empty) before reading it.
drain_postfix

A_ARGS=(imap --addr 127.0.0.1:2143 --user $PEER_USER --pass $PEER_PASS)
B_ARGS=(imap --addr "127.0.0.1:$(port 2 43)" --user $RM_USER --pass "$RM_PASS")
workload imap "IMAP on the resulting mailbox (Raftmail: node 2)"

A_ARGS=(visibility --send 127.0.0.1:2525 --idle 127.0.0.1:2143 --user $PEER_USER --pass $PEER_PASS --messages "$N_VIS")
B_ARGS=(visibility --send "127.0.0.1:$(port 1 25)" --idle "127.0.0.1:$(port 3 43)" --user $RM_USER --pass "$RM_PASS" --messages "$N_VIS")
workload visibility "250 → IDLE EXISTS, $N_VIS messages (Raftmail: node 1 → node 3)"

A_ARGS=(pop3 --addr 127.0.0.1:2110 --user $PEER_USER --pass $PEER_PASS)
B_ARGS=(pop3 --addr "127.0.0.1:$(port 2 10)" --user $RM_USER --pass "$RM_PASS")
workload pop3 "POP3 STAT, UIDL, RETR of every message (Raftmail: node 2)"

# Peak memory over the whole run.
for p in "${run_watch_pids[@]}"; do
	kill -TERM "$p"
	wait "$p"
done
run_watch_pids=()
printf 'rss\tpeak memory over the whole run (VmHWM, Pss)\t\t\n' >>"$RES/workloads.tsv"

if [ -n "${BENCH_UNIQUE:-}" ]; then
	bodies="SMTP bodies are base64 of random bytes, different in every message (BENCH_UNIQUE=1)."
else
	bodies="SMTP bodies repeat one line of text (they compress well)."
fi
cat >"$WORK/notes.md" <<TXT
Scale: BENCH_SCALE=$SCALE (message counts × $SCALE of the full run: $N_SMALL × 10 KiB,
$N_LARGE × 1 MiB, $N_VIS visibility messages), $ROUNDS rounds per workload, each
round A (Postfix + Dovecot) then B (Raftmail), one workload after the other, so
IMAP and POP3 read the mailbox every SMTP round filled (on both servers the
same messages). From the second IMAP round on, STORE finds every message
already \\Seen. $bodies

What a 250 means differs: Postfix answers once the message is in its queue on
one disk (fsynced), and hands it to Dovecot over LMTP afterwards; Raftmail
answers once the message is on two of three nodes' disks and its delivery is
committed through Raft and applied, so it is already in the mailbox. Both
servers run on this one machine; Raftmail's three nodes share its cores.
Connections spread over the three nodes' MX ports; Postfix has one. IMAP and
POP3 run over plain TCP on both (Dovecot is configured without TLS; Raftmail's
plain listeners on loopback accept a password without TLS, as Dovecot's do).

CPU per message (SMTP workloads): each round is watched by \`raftmail bench
procs\` from just before the client starts until the server is done with the
round's messages (A: Postfix's queue is empty, so Dovecot holds them all; B:
the three nodes have applied the same index and none lacks a body), and the
CPU time is divided by the round's messages. *Whole machine* is the busy time
of every core from /proc/stat (user, nice, system, irq and softirq: not idle,
iowait or steal) less the watcher's own: it includes the load generator (the
same client for both servers) and anything else the machine ran meanwhile.
*Server processes* is the user and system time of the server's processes
(Postfix + Dovecot found by executable, with the time of the children they
reaped; Raftmail's three \`raftmail serve\`). *Peak RSS, server processes*
is the largest sum of the VmRSS of those processes, sampled every 100 ms over
the same span; *peak PSS* the largest sum of their Pss (smaps_rollup: each
process's private pages plus its share of the pages it shares), which counts
the libraries and shared memory of Postfix's and Dovecot's many processes
once rather than once per process: the fairer figure of the two for a server
of many processes (for Raftmail's three static processes they are about the
same).

Memory over the whole run: for Postfix + Dovecot, the largest sum (sampled
every second) of the peak RSS (VmHWM) of their live processes, found by
executable (/usr/lib/postfix, /usr/lib/dovecot); for Raftmail, each
\`raftmail serve\`'s VmHWM at the end and their sum. Peak PSS: the largest
sampled sum of Pss, as above but every second.

Postfix $(postconf -h mail_version 2>/dev/null || echo '?'), Dovecot $(dovecot --version 2>/dev/null | cut -d' ' -f1 || echo '?')
(Debian packages, configured by shared/peers/postfix-dovecot.sh: Maildir,
mail_fsync=optimized, LMTP from Postfix to Dovecot).
TXT

echo ">> report"
"$BIN" bench report --results "$RES" --doc "$DOC" --svg "$SVG" --notes "$WORK/notes.md"
