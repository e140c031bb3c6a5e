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
# then writes the side-by-side section of docs/benchmarks.md and
# docs/bench-peers.svg (`raftmail bench report`), and stops everything it
# started. Not part of make test or CI: it needs root (Debian packages).
#
#   BENCH_SCALE=0.25   scale every message count (default 1)
#   BENCH_ROUNDS=3     rounds per workload
#   BENCH_KEEP=1       keep the temporary directory (results, node logs)
#   PEERS_SCRIPT=...   the Postfix + Dovecot installer
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
# shellcheck source=scripts/bench-cluster.sh
. scripts/bench-cluster.sh
SCALE=${BENCH_SCALE:-1}
ROUNDS=${BENCH_ROUNDS:-3}
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
sampler_pid=
cleanup() {
	set +e
	trap - EXIT INT TERM
	[ -n "$sampler_pid" ] && kill "$sampler_pid" 2>/dev/null && wait "$sampler_pid" 2>/dev/null
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

# Peak RSS of Postfix and Dovecot: every second, the sum of VmHWM over their
# live processes (by executable), keeping the largest sum seen.
sample_rss() {
	local pf_max=0 dc_max=0 pf dc exe hwm p
	while :; do
		pf=0 dc=0
		for p in /proc/[0-9]*; do
			exe=$(readlink "$p/exe" 2>/dev/null) || continue
			case $exe in
			/usr/lib/postfix/* | /usr/sbin/postfix) kind=pf ;;
			/usr/lib/dovecot/* | /usr/sbin/dovecot) kind=dc ;;
			*) continue ;;
			esac
			hwm=$(awk '/^VmHWM:/ { print $2 }' "$p/status" 2>/dev/null) || continue
			[ -n "$hwm" ] || continue
			if [ $kind = pf ]; then pf=$((pf + hwm)); else dc=$((dc + hwm)); fi
		done
		[ $pf -gt $pf_max ] && pf_max=$pf
		[ $dc -gt $dc_max ] && dc_max=$dc
		echo "$pf_max $dc_max" >"$WORK/peer-rss.tmp" && mv "$WORK/peer-rss.tmp" "$WORK/peer-rss"
		sleep 1
	done
}
sample_rss &
sampler_pid=$!

# drain_postfix waits until Postfix has handed everything it accepted to
# Dovecot, so that its background delivery does not run during (and slow
# down) the Raftmail round that follows.
drain_postfix() {
	for _ in $(seq 1 600); do
		[ -z "$(postqueue -j 2>/dev/null | head -c1)" ] && return 0
		sleep 0.5
	done
}

MX_ADDRS=(--addr "127.0.0.1:$(port 1 25)" --addr "127.0.0.1:$(port 2 25)" --addr "127.0.0.1:$(port 3 25)")
# workload ID TITLE: records it, then runs A and B BENCH_ROUNDS times.
# The commands are in A_ARGS and B_ARGS (arguments of `raftmail bench`).
workload() {
	local id=$1 title=$2 r
	mkdir -p "$RES/$id"
	printf '%s\t%s\t%s\t%s\n' "$id" "$title" "raftmail bench ${A_ARGS[*]}" "raftmail bench ${B_ARGS[*]//$RM_PASS/PASSWORD}" >>"$RES/workloads.tsv"
	for r in $(seq 1 "$ROUNDS"); do
		echo ">> $title, round $r/$ROUNDS: Postfix + Dovecot"
		"$BIN" bench "${A_ARGS[@]}" --json >"$RES/$id/a-$r.json"
		drain_postfix
		echo ">> $title, round $r/$ROUNDS: Raftmail"
		"$BIN" bench "${B_ARGS[@]}" --json >"$RES/$id/b-$r.json"
	done
}

for c in 1 16 64; do
	A_ARGS=(smtp --addr 127.0.0.1:2525 --to $PEER_USER --messages "$N_SMALL" --size 10KiB --concurrency $c)
	B_ARGS=(smtp "${MX_ADDRS[@]}" --to $RM_USER --messages "$N_SMALL" --size 10KiB --concurrency $c)
	workload smtp-c$c "SMTP $N_SMALL × 10 KiB, concurrency $c"
done
A_ARGS=(smtp --addr 127.0.0.1:2525 --to $PEER_USER --messages "$N_LARGE" --size 1MiB --concurrency 4)
B_ARGS=(smtp "${MX_ADDRS[@]}" --to $RM_USER --messages "$N_LARGE" --size 1MiB --concurrency 4)
workload smtp-1mib-c4 "SMTP $N_LARGE × 1 MiB, concurrency 4"

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

# Peak memory.
sleep 1.5
read -r pf_kb dc_kb <"$WORK/peer-rss"
mkdir -p "$RES/rss"
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
printf '{"metrics":[{"name":"peak RSS, all processes","unit":"MiB","value":%s},{"name":"peak RSS, Postfix processes","unit":"MiB","value":%s},{"name":"peak RSS, Dovecot processes","unit":"MiB","value":%s}]}\n' \
	"$(mib $((pf_kb + dc_kb)))" "$(mib "$pf_kb")" "$(mib "$dc_kb")" >"$RES/rss/a-1.json"
total=0
node_metrics=""
for n in 1 2 3; do
	kb=$(awk '/^VmHWM:/ { print $2 }' "/proc/${node_pids[$((n - 1))]}/status")
	total=$((total + kb))
	node_metrics+=",{\"name\":\"peak RSS, node$n\",\"unit\":\"MiB\",\"value\":$(mib "$kb")}"
done
printf '{"metrics":[{"name":"peak RSS, all processes","unit":"MiB","value":%s}%s]}\n' "$(mib $total)" "$node_metrics" >"$RES/rss/b-1.json"
printf 'rss\tpeak memory over the whole run (VmHWM)\t\t\n' >>"$RES/workloads.tsv"

cat >"$WORK/notes.md" <<TXT
Scale: BENCH_SCALE=$SCALE (message counts × $SCALE of the full run: $N_SMALL × 10 KiB,
$N_LARGE × 1 MiB, $N_VIS visibility messages), $ROUNDS rounds per workload, each
round A (Postfix + Dovecot) then B (Raftmail), one workload after the other, so
IMAP and POP3 read the mailbox every SMTP round filled (on both servers the
same messages). From the second IMAP round on, STORE finds every message
already \\Seen.

What a 250 means differs: Postfix answers once the message is in its queue on
one disk (fsynced), and hands it to Dovecot over LMTP afterwards; Raftmail
answers once the message is on two of three nodes' disks and its delivery is
committed through Raft and applied, so it is already in the mailbox. Both
servers run on this one machine; Raftmail's three nodes share its cores.
Connections spread over the three nodes' MX ports; Postfix has one. IMAP and
POP3 run over plain TCP on both (Dovecot is configured without TLS; Raftmail's
plain listeners on loopback accept a password without TLS, as Dovecot's do).

Memory: for Postfix + Dovecot, the largest sum (sampled every second) of the
peak RSS (VmHWM) of their live processes, found by executable
(/usr/lib/postfix, /usr/lib/dovecot); for Raftmail, each \`raftmail serve\`'s
VmHWM at the end and their sum.

Postfix $(postconf -h mail_version 2>/dev/null || echo '?'), Dovecot $(dovecot --version 2>/dev/null | cut -d' ' -f1 || echo '?')
(Debian packages, configured by shared/peers/postfix-dovecot.sh: Maildir,
mail_fsync=optimized, LMTP from Postfix to Dovecot).
TXT

echo ">> report"
"$BIN" bench report --results "$RES" --doc docs/benchmarks.md --svg docs/bench-peers.svg --notes "$WORK/notes.md"
