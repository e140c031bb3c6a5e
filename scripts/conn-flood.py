#!/usr/bin/env python3
"""conn-flood.py: the flooding client of scripts/conn-flood.sh.

  conn-flood.py flood HOST PORT --conns N --sources A[,B...|A*COUNT] [--parallel P] --release FILE
      Opens N connections to an IMAP port, P at a time, spread round-robin
      over the source addresses (127.0.0.9, or 127.0.1.1*200: 200 from
      127.0.1.1 on), and
      reads each one's first line: a greeting ("* OK") is held open (a NOOP
      every 20 s, so only the server's own timeouts end it); a BYE or a
      silent close is counted. Then prints "FLOOD {json}" and "HOLDING",
      holds until FILE exists, closes everything and prints
      "RELEASED {json}".
  conn-flood.py imap HOST PORT USER PASSWORD SUBJECT
      Logs in from 127.0.0.1, waits (10 s at most) for a message with
      SUBJECT in INBOX; prints the outcome, exits 1 on failure.
  conn-flood.py smtp HOST PORT RCPT SUBJECT
      Sends one message to RCPT over SMTP from 127.0.0.1; exits 1 unless
      it is accepted.
"""
import argparse
import asyncio
import collections
import imaplib
import ipaddress
import json
import os
import smtplib
import socket
import sys
import time

BYE_IP = "* BYE [UNAVAILABLE] Too many connections from your address, try again later"
BYE_NODE = "* BYE [UNAVAILABLE] Too many connections to this server, try again later"


def sources(spec):
    """A,B,... and A*N (N addresses from A on)."""
    out = []
    for part in spec.split(","):
        if "*" in part:
            a, n = part.split("*")
            first = int(ipaddress.ip_address(a))
            out += [str(ipaddress.ip_address(first + i)) for i in range(int(n))]
        else:
            out.append(part)
    return out


class Flood:
    def __init__(self, host, port, timeout):
        self.host, self.port, self.timeout = host, port, timeout
        self.first = collections.Counter()  # outcome of each connection's first line
        self.ended = collections.Counter()  # how held connections ended before release
        self.held = set()
        self.tasks = set()
        self.release = asyncio.Event()

    async def one(self, src):
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            sock.bind((src, 0))
            await asyncio.wait_for(loop.sock_connect(sock, (self.host, self.port)), self.timeout)
            reader, writer = await asyncio.open_connection(sock=sock)
        except (OSError, asyncio.TimeoutError) as e:
            sock.close()
            self.first["error: " + (type(e).__name__ if not isinstance(e, OSError) or not e.strerror else e.strerror)] += 1
            return
        try:
            line = (await asyncio.wait_for(reader.readline(), self.timeout)).decode(errors="replace").rstrip("\r\n")
        except (OSError, asyncio.TimeoutError) as e:
            self.first["error reading: " + type(e).__name__] += 1
            writer.close()
            return
        if line.startswith("* OK"):
            self.first["greeting"] += 1
            t = asyncio.create_task(self.hold(reader, writer))
            self.tasks.add(t)
            t.add_done_callback(self.tasks.discard)
            return
        self.first[{BYE_IP: "BYE per address", BYE_NODE: "BYE per node", "": "closed without a word"}.get(line, "other: " + line[:60])] += 1
        writer.close()

    async def hold(self, reader, writer):
        self.held.add(writer)
        n = 0
        try:
            while not self.release.is_set():
                try:
                    await asyncio.wait_for(self.release.wait(), 20)
                    break
                except asyncio.TimeoutError:
                    pass
                n += 1
                writer.write(b"n%d NOOP\r\n" % n)
                while True:
                    line = (await reader.readline()).decode(errors="replace").rstrip("\r\n")
                    if line == "":
                        self.ended["closed by the server"] += 1
                        return
                    if line.startswith("* BYE"):
                        self.ended[line] += 1
                        return
                    if line.startswith("n%d " % n):
                        break
        except OSError as e:
            self.ended["error: " + type(e).__name__] += 1
        finally:
            self.held.discard(writer)
            writer.close()


async def flood(args):
    f = Flood(args.host, args.port, 30)
    srcs = sources(args.sources)
    sem = asyncio.Semaphore(args.parallel)
    start = time.monotonic()

    async def limited(src):
        async with sem:
            await f.one(src)

    await asyncio.gather(*(limited(srcs[i % len(srcs)]) for i in range(args.conns)))
    took = time.monotonic() - start
    print("FLOOD " + json.dumps({
        "connections": args.conns, "sources": len(srcs), "seconds": round(took, 1),
        "first_line": dict(f.first), "held_now": len(f.held), "held_ended": dict(f.ended),
    }), flush=True)
    print("HOLDING", flush=True)
    held_from = time.monotonic()
    while not os.path.exists(args.release):
        await asyncio.sleep(0.2)
    still = len(f.held)
    f.release.set()
    await asyncio.gather(*list(f.tasks), return_exceptions=True)
    print("RELEASED " + json.dumps({
        "held_seconds": round(time.monotonic() - held_from, 1), "held_at_release": still,
        "held_ended_before_release": dict(f.ended),
    }), flush=True)


def imap_check(args):
    deadline = time.monotonic() + 10
    m = imaplib.IMAP4(args.host, args.port, timeout=30)
    m.login(args.user, args.password)
    while True:
        m.select("INBOX")
        typ, data = m.search(None, "SUBJECT", '"%s"' % args.subject)
        if typ == "OK" and data[0].split():
            print("IMAP: logged in, found %r in INBOX (message %s)" % (args.subject, data[0].split()[-1].decode()))
            m.logout()
            return 0
        if time.monotonic() > deadline:
            print("IMAP: %r not in INBOX after 10 s" % args.subject)
            return 1
        time.sleep(0.2)


def smtp_check(args):
    s = smtplib.SMTP(args.host, args.port, source_address=("127.0.0.1", 0), timeout=30)
    msg = "From: flood-check@remote.example\r\nTo: %s\r\nSubject: %s\r\n\r\nsent while the flood is held\r\n" % (args.rcpt, args.subject)
    refused = s.sendmail("flood-check@remote.example", [args.rcpt], msg)
    s.quit()
    if refused:
        print("SMTP: refused %r" % refused)
        return 1
    print("SMTP: message accepted (250)")
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("flood")
    f.add_argument("host")
    f.add_argument("port", type=int)
    f.add_argument("--conns", type=int, default=20000)
    f.add_argument("--sources", default="127.0.0.9")
    f.add_argument("--parallel", type=int, default=500)
    f.add_argument("--release", required=True)
    i = sub.add_parser("imap")
    for a in ("host", "port", "user", "password", "subject"):
        i.add_argument(a, type=int if a == "port" else str)
    s = sub.add_parser("smtp")
    for a in ("host", "port", "rcpt", "subject"):
        s.add_argument(a, type=int if a == "port" else str)
    args = p.parse_args()
    if args.cmd == "flood":
        asyncio.run(flood(args))
        return 0
    try:
        return imap_check(args) if args.cmd == "imap" else smtp_check(args)
    except (OSError, imaplib.IMAP4.error, smtplib.SMTPException) as e:
        print("%s: failed: %s" % (args.cmd.upper(), e))
        return 1


if __name__ == "__main__":
    sys.exit(main())
