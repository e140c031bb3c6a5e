#!/usr/bin/env bash
# Enforces the dependency direction of DESIGN.md ("Layout and dependency
# direction") on non-test imports between Raftmail packages:
#
#   storage/...    imports nothing internal
#   cluster/...    storage
#   protocol/X/... storage and protocol/auth; protocol/smtp and protocol/delivery may also
#                  import protocol/mailauth; protocol/smtp, protocol/imap and
#                  protocol/delivery may import protocol/accept. Not cluster (protocol packages
#                  declare the small interfaces they need) and no other
#                  protocol package.
#   protocol/connlimit imports nothing internal (cmd wraps the mail
#                  listeners with it; the protocols never see it).
#   ops/...        cluster, storage, protocol/mailauth (DKIM key generation and
#                  TXT records for the admin API, the DNS resolver seam for
#                  `dns check`)
#   chaos/...      anything but cmd
#   cmd/...        anything
#   anything else  anything but chaos and cmd
#   internal/wallclock may be imported by any package (a leaf: the wall clock)
#
# A package may always import packages in its own tree (cluster/x may import
# cluster). Test files are not checked: tests may build real clusters.
# Prints one line per violation and exits 1 if there is any.
set -euo pipefail

cd "$(dirname "$0")/.."
GO=${GO:-go}
if ! command -v "$GO" >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
	GO=/usr/local/go/bin/go
fi
MODULE=$("$GO" list -m -f '{{.Path}}')
PREFIX="$MODULE/"

# -e: report what can be read from a tree that does not build yet.
errfile=$(mktemp)
trap 'rm -f "$errfile"' EXIT
if ! listing=$("$GO" list -e -f '{{.ImportPath}} {{join .Imports " "}}' ./... 2>"$errfile"); then
	cat "$errfile" >&2
	echo "check-imports: go list failed" >&2
	exit 2
fi
grep -v 'matched no packages' "$errfile" >&2 || true

# area prints the top-level area of a module-relative package path:
# protocol packages are areas of their own (protocol/smtp).
area() {
	case $1 in
	protocol/*)
		local rest=${1#protocol/}
		echo "protocol/${rest%%/*}"
		;;
	*) echo "${1%%/*}" ;;
	esac
}

# allowed FROM_AREA TO_AREA: exit 0 if allowed, else print the rule and exit 1.
allowed() {
	local from=$1 to=$2
	[ "$from" = "$to" ] && return 0
	# internal/wallclock is a leaf (it imports nothing internal) that every
	# package may read the time from.
	[ "$to" = internal ] && [ "$3" = internal/wallclock ] && return 0
	case $from in
	storage)
		echo "storage imports nothing internal"
		return 1
		;;
	cluster)
		[ "$to" = storage ] && return 0
		echo "cluster may import only storage"
		return 1
		;;
	protocol/connlimit)
		echo "protocol/connlimit imports nothing internal"
		return 1
		;;
	protocol/*)
		[ "$to" = storage ] && return 0
		# protocol/auth (logins, throttling, SASL) is shared by every protocol.
		[ "$to" = protocol/auth ] && [ "$from" != protocol/auth ] && return 0
		if [ "$to" = protocol/mailauth ] && { [ "$from" = protocol/smtp ] || [ "$from" = protocol/delivery ]; }; then
			return 0
		fi
		# protocol/accept (the accept pipeline) is shared by what accepts mail.
		if [ "$to" = protocol/accept ] && { [ "$from" = protocol/smtp ] || [ "$from" = protocol/imap ] || [ "$from" = protocol/delivery ]; }; then
			return 0
		fi
		case $to in
		cluster) echo "protocol packages may import only storage; declare the interface you need from cluster in $from" ;;
		protocol/mailauth) echo "only protocol/smtp and protocol/delivery may import protocol/mailauth" ;;
		protocol/accept) echo "only protocol/smtp, protocol/imap and protocol/delivery may import protocol/accept" ;;
		*) echo "protocol packages may import only storage and protocol/auth, not each other; protocol/smtp and protocol/delivery may also import protocol/mailauth" ;;
		esac
		return 1
		;;
	ops)
		case $to in cluster | storage | protocol/mailauth) return 0 ;; esac
		echo "ops may import only cluster, storage and protocol/mailauth"
		return 1
		;;
	chaos)
		[ "$to" != cmd ] && return 0
		echo "chaos may import anything but cmd"
		return 1
		;;
	cmd)
		return 0
		;;
	*)
		case $to in
		chaos) echo "only cmd and chaos may import chaos" ;;
		cmd) echo "nothing imports cmd" ;;
		*) return 0 ;;
		esac
		return 1
		;;
	esac
}

violations=0
while read -r pkg imports; do
	[ -n "$pkg" ] || continue
	case $pkg in "$PREFIX"*) ;; *) continue ;; esac
	from_rel=${pkg#"$PREFIX"}
	from=$(area "$from_rel")
	for imp in $imports; do
		case $imp in "$PREFIX"*) ;; *) continue ;; esac
		to_rel=${imp#"$PREFIX"}
		to=$(area "$to_rel")
		if ! rule=$(allowed "$from" "$to" "$to_rel"); then
			echo "$from_rel imports forbidden $to_rel ($rule)"
			violations=$((violations + 1))
		fi
	done
done <<<"$listing"

if [ "$violations" -gt 0 ]; then
	echo "check-imports: $violations forbidden import(s); see DESIGN.md \"Layout and dependency direction\"" >&2
	exit 1
fi
