package imap

import (
	"fmt"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"
)

// benchMessage returns a message of about size bytes: every fifth one a
// multipart/alternative, the others text/plain, all with CRLF line ends.
func benchMessage(i, size int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Return-Path: <sender%d@example.test>\r\n", i)
	fmt.Fprintf(&b, "Received: from mx%d.example.test (mx%d.example.test [192.0.2.%d])\r\n\tby imap.example.test with ESMTPS id %08x\r\n\tfor <alice@example.test>; Mon, 02 Mar 2026 10:00:00 +0000\r\n", i%7, i%7, i%250, i*7919)
	fmt.Fprintf(&b, "From: Sender %d <sender%d@example.test>\r\n", i, i)
	b.WriteString("To: Alice <alice@example.test>\r\n")
	fmt.Fprintf(&b, "Subject: Benchmark message number %d\r\n", i)
	b.WriteString("Date: Mon, 02 Mar 2026 10:00:00 +0000\r\n")
	fmt.Fprintf(&b, "Message-ID: <bench-%d@example.test>\r\n", i)
	b.WriteString("MIME-Version: 1.0\r\n")
	line := "The quick brown fox jumps over the lazy dog, again and again and again.\r\n"
	if i%5 == 0 {
		b.WriteString("Content-Type: multipart/alternative; boundary=\"b1\"\r\n\r\n")
		b.WriteString("--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n")
		for b.Len() < size/2 {
			b.WriteString(line)
		}
		b.WriteString("--b1\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<html><body>\r\n")
		for b.Len() < size-40 {
			b.WriteString("<p>" + line)
		}
		b.WriteString("</body></html>\r\n--b1--\r\n")
		return b.String()
	}
	b.WriteString("Content-Type: text/plain; charset=utf-8\r\n\r\n")
	for b.Len() < size {
		b.WriteString(line)
	}
	return b.String()
}

// benchMailbox is n messages of about 10 KiB.
func benchMailbox(n int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		out[i] = []byte(benchMessage(i, 10<<10))
	}
	return out
}

// BenchmarkBuildFetch: the body part of UID FETCH 1:* on a mailbox of
// 1,000 messages of 10 KiB; one op is the whole mailbox.
func BenchmarkBuildFetch(b *testing.B) {
	msgs := benchMailbox(1000)
	total := 0
	for _, m := range msgs {
		total += len(m)
	}
	for _, bc := range []struct {
		name string
		opts *imap.FetchOptions
	}{
		{"Body", &imap.FetchOptions{UID: true, BodySection: []*imap.FetchItemBodySection{{Peek: true}}}},
		{"Header", &imap.FetchOptions{UID: true, BodySection: []*imap.FetchItemBodySection{{Peek: true, Specifier: imap.PartSpecifierHeader}}}},
		{"Text", &imap.FetchOptions{UID: true, BodySection: []*imap.FetchItemBodySection{{Peek: true, Specifier: imap.PartSpecifierText}}}},
		{"Envelope", &imap.FetchOptions{UID: true, Envelope: true}},
		{"BodyStructure", &imap.FetchOptions{UID: true, BodyStructure: &imap.FetchItemBodyStructure{Extended: true}}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.SetBytes(int64(total))
			b.ReportAllocs()
			n := 0
			var fd fetchData
			for b.Loop() {
				for _, m := range msgs {
					buildFetch(m, bc.opts, &fd)
					if len(fd.sections) > 0 {
						n += len(fd.sections[0])
					}
				}
			}
			if n == 0 && len(bc.opts.BodySection) > 0 {
				b.Fatal("empty sections")
			}
		})
	}
}

// BenchmarkFetchServer: UID FETCH 1:* through a real server and client
// on one node, 1,000 messages of 10 KiB; one op is one command.
func BenchmarkFetchServer(b *testing.B) {
	e := newEnv(b, envOptions{})
	msgs := benchMailbox(1000)
	for _, m := range msgs {
		e.deliver(0, "INBOX", string(m))
	}
	c := e.client(0, nil)
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		b.Fatal(err)
	}
	all := imap.UIDSetNum()
	all.AddRange(1, 0)
	for _, bc := range []struct {
		name string
		sec  *imap.FetchItemBodySection
	}{
		{"Body", &imap.FetchItemBodySection{Peek: true}},
		{"Header", &imap.FetchItemBodySection{Peek: true, Specifier: imap.PartSpecifierHeader}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			opts := &imap.FetchOptions{UID: true, BodySection: []*imap.FetchItemBodySection{bc.sec}}
			for b.Loop() {
				if err := c.Fetch(all, opts).Close(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
