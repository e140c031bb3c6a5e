#!/usr/bin/env bash
# run-local.sh: a local three-node Raftmail cluster on 127.0.0.1 (make run).
#
# Node N listens on 10000 + 100*N + the last two digits of each standard port
# (DESIGN.md, "Default ports"): node 1's cluster port is 10147, gossip 10146,
# admin API 10148. Data lives in $RAFTMAIL_RUN_DIR (default .raftmail-run) and
# is reused by the next run. Ctrl-C stops all three nodes cleanly.
set -euo pipefail

cd "$(dirname "$0")/.."
BIN=${RAFTMAIL_BIN:-bin/raftmail}
DIR=${RAFTMAIL_RUN_DIR:-.raftmail-run}
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)

port() { echo $((10000 + 100 * $1 + $2)); }
flags() { # node flags for node $1
	echo --data-dir "$DIR/node$1" --name "node$1" \
		--cluster-addr "127.0.0.1:$(port "$1" 47)" \
		--gossip-addr "127.0.0.1:$(port "$1" 46)" \
		--admin-addr "127.0.0.1:$(port "$1" 48)" \
		--hostname localhost \
		--smtp-addr "127.0.0.1:$(port "$1" 25)" \
		--submission-addr "127.0.0.1:$(port "$1" 87)" \
		--submissions-addr "127.0.0.1:$(port "$1" 65)" \
		--imap-addr "127.0.0.1:$(port "$1" 43)" \
		--imaps-addr "127.0.0.1:$(port "$1" 93)" \
		--pop3-addr "127.0.0.1:$(port "$1" 10)" \
		--pop3s-addr "127.0.0.1:$(port "$1" 95)"
}
admin() { # admin flags for node $1
	echo --data-dir "$DIR/node$1" --admin-addr "127.0.0.1:$(port "$1" 48)"
}

pids=()
stop() {
	trap - INT TERM EXIT
	echo
	echo "Stopping the cluster..."
	for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	echo "Stopped. Data kept in $DIR (the next 'make run' reuses it)."
	exit 0
}
trap stop INT TERM EXIT

start() { # start node $1 in the background, logging to $DIR/node$1.log
	# shellcheck disable=SC2046
	"$BIN" serve $(flags "$1") >>"$DIR/node$1.log" 2>&1 &
	pids+=($!)
}

wait_admin() { # wait until node $1's admin API answers
	for _ in $(seq 1 100); do
		# status exits 0 (healthy) or 1 (degraded, e.g. a node still
		# joining) once the admin API answers, 2 while it does not.
		rc=0
		# shellcheck disable=SC2046
		"$BIN" status $(admin "$1") >/dev/null 2>&1 || rc=$?
		if [ "$rc" -ne 2 ]; then return 0; fi
		sleep 0.1
	done
	echo "node$1 did not come up; see $DIR/node$1.log" >&2
	return 1
}

if [ ! -f "$DIR/node1/raftmail.toml" ]; then
	echo "Creating a new cluster in $DIR"
	# shellcheck disable=SC2046
	"$BIN" init $(flags 1) >/dev/null
fi
start 1
wait_admin 1
for n in 2 3; do
	if [ ! -f "$DIR/node$n/raftmail.toml" ]; then
		# shellcheck disable=SC2046
		tok=$("$BIN" token create --ttl 10m --json $(admin 1) | sed -n 's/.*"token": "\(.*\)".*/\1/p')
		# shellcheck disable=SC2046
		"$BIN" join --token "$tok" $(flags "$n") "127.0.0.1:$(port 1 47)" >/dev/null
	fi
	start "$n"
done
wait_admin 2
wait_admin 3
for _ in $(seq 1 100); do
	# shellcheck disable=SC2046
	st=$("$BIN" status --json $(admin 1) 2>/dev/null || true)
	voters=$(grep -c '"voter": true' <<<"$st" || true)
	[ "$voters" = 3 ] && grep -q '"role": "Leader"' <<<"$st" && break
	sleep 0.2
done

# The demo domain and user.
# shellcheck disable=SC2046
if ! "$BIN" domain list $(admin 1) | grep -qx example.test; then
	"$BIN" domain add example.test $(admin 1) >/dev/null
fi
pwfile="$DIR/demo-password"
# shellcheck disable=SC2046
if ! "$BIN" user list $(admin 1) | grep -q '^demo@example.test'; then
	pw=${RAFTMAIL_DEMO_PASSWORD:-$(head -c 9 /dev/urandom | base64 | tr '+/' '-_')}
	printf '%s\n' "$pw" | "$BIN" user add demo@example.test --password-stdin $(admin 1) >/dev/null
	printf '%s\n' "$pw" >"$pwfile"
	chmod 600 "$pwfile"
fi
pw=${RAFTMAIL_DEMO_PASSWORD:-$(cat "$pwfile" 2>/dev/null || echo "(set before; see RAFTMAIL_DEMO_PASSWORD)")}

cat <<TXT

Raftmail is running: three nodes on 127.0.0.1, data in $DIR, logs in $DIR/node*.log

  node   SMTP MX  submission  submissions  IMAP   IMAPS  POP3   POP3S  cluster  admin API
  node1  $(port 1 25)    $(port 1 87)       $(port 1 65)        $(port 1 43)  $(port 1 93)  $(port 1 10)  $(port 1 95)  $(port 1 47)    http://127.0.0.1:$(port 1 48)
  node2  $(port 2 25)    $(port 2 87)       $(port 2 65)        $(port 2 43)  $(port 2 93)  $(port 2 10)  $(port 2 95)  $(port 2 47)    http://127.0.0.1:$(port 2 48)
  node3  $(port 3 25)    $(port 3 87)       $(port 3 65)        $(port 3 43)  $(port 3 93)  $(port 3 10)  $(port 3 95)  $(port 3 47)    http://127.0.0.1:$(port 3 48)

Demo domain example.test, user demo@example.test, password: $pw
The certificates are self-signed: clients must be told not to verify them.

Send a message through node 1 (submission, STARTTLS, AUTH):
  python3 -c 'import smtplib,ssl; s=smtplib.SMTP("127.0.0.1",$(port 1 87)); s.starttls(context=ssl._create_unverified_context()); s.login("demo@example.test","$pw"); s.sendmail("demo@example.test",["demo@example.test"],"From: demo@example.test\r\nSubject: hello\r\n\r\nHello from Raftmail\r\n"); s.quit()'
  swaks --server 127.0.0.1:$(port 1 25) --to demo@example.test          (MX, no AUTH, if swaks is installed)

Read it through node 3 (IMAPS):
  python3 -c 'import imaplib,ssl; m=imaplib.IMAP4_SSL("127.0.0.1",$(port 3 93),ssl_context=ssl._create_unverified_context()); m.login("demo@example.test","$pw"); m.select("INBOX"); t,d=m.search(None,"ALL"); print(d); print(m.fetch(d[0].split()[-1],"(BODY[HEADER.FIELDS (SUBJECT)])")[1])'
  openssl s_client -quiet -connect 127.0.0.1:$(port 3 93)      then: a LOGIN demo@example.test $pw / b SELECT INBOX / c FETCH 1:* (ENVELOPE)

Or through node 2 with POP3S:
  openssl s_client -quiet -connect 127.0.0.1:$(port 2 95)      then: USER demo@example.test / PASS $pw / LIST / RETR 1

The cluster:
  $BIN status $(admin 1)
  $BIN user list $(admin 2)
  curl -s http://127.0.0.1:$(port 1 48)/metrics | grep raftmail_

Press Ctrl-C to stop all three nodes (data is kept for the next 'make run').
TXT
$BIN status $(admin 1) || true
wait
