package wire

import (
	"fmt"
	"io"
	"strings"
	"testing"
)

// runTranscript dispatches every command of in and returns one line per
// command: its description, or the answer the server would give.
func runTranscript(in string, lim Limits) ([]string, []int64) {
	r, conts := newTestReader(in, lim)
	var got []string
	for {
		d, err := dispatch(r)
		if err == io.EOF {
			return got, *conts
		}
		if e := AsError(err); e != nil {
			code := ""
			if e.Code != "" {
				code = " [" + e.Code + "]"
			}
			got = append(got, fmt.Sprintf("%s %s%s", e.Tag, e.Answer, code))
			if e.Fatal() {
				return got, *conts
			}
			continue
		}
		if err != nil {
			return append(got, "error: "+err.Error()), *conts
		}
		got = append(got, d)
	}
}

func TestTranscripts(t *testing.T) {
	for _, tc := range []struct {
		name  string
		in    string
		want  []string
		conts []int64
	}{
		{"LOGIN (RFC 9051 6.2.3)", "a001 LOGIN SMITH SESAME\r\na002 login {5}\r\nSMITH \"SE\\\"SAME\"\r\n",
			[]string{`a001 LOGIN user="SMITH" pass="SESAME"`, `a002 LOGIN user="SMITH" pass="SE\"SAME"`}, []int64{5}},
		{"SELECT", "A142 SELECT INBOX\r\nA143 EXAMINE \"blurdybloop\"\r\n",
			[]string{`A142 SELECT "INBOX"`, `A143 EXAMINE "blurdybloop"`}, nil},
		{"SELECT CONDSTORE/QRESYNC (RFC 7162 3.2.5)",
			"A02 SELECT INBOX (QRESYNC (67890007 20050715194045000 41,43:211,214:541))\r\n" +
				"B02 SELECT INBOX (QRESYNC (67890007 90060115194045000 41:211,214:541 (1:6,8:15 41:46,48:55)))\r\n" +
				"C02 SELECT INBOX (CONDSTORE)\r\n" +
				"D02 SELECT INBOX (QRESYNC (0 1))\r\n" +
				"E02 SELECT INBOX (X-ONE X-TWO 1:4,7 X-THREE (a (\"b c\" 2)) CONDSTORE)\r\n" +
				"F02 SELECT INBOX (NOPE)\r\n",
			[]string{
				`A02 SELECT "INBOX" QRESYNC uidvalidity=67890007 modseq=20050715194045000 known=41,43:211,214:541`,
				`B02 SELECT "INBOX" QRESYNC uidvalidity=67890007 modseq=90060115194045000 known=41:211,214:541 map=1:6,8:15/41:46,48:55`,
				`C02 SELECT "INBOX" CONDSTORE`,
				`D02 BAD`,
				`E02 SELECT "INBOX" X-ONE X-TWO=1:4,7 X-THREE=(a ("b c" 2)) CONDSTORE`,
				`F02 BAD`,
			}, nil},
		{"FETCH (RFC 9051 6.4.5)",
			"A654 FETCH 2:4 (FLAGS BODY[HEADER.FIELDS (DATE FROM)])\r\n" +
				"a003 fetch 12 full\r\n" +
				"a004 FETCH 12 (BODY.PEEK[HEADER.FIELDS (FROM SUBJECT)]<0.100> UID)\r\n" +
				"a005 FETCH 1:* (BODY[1.2.MIME] BODY[3.HEADER.FIELDS.NOT (X-A)] BODY[] BINARY.PEEK[1]<0.10> BINARY.SIZE[2] RFC822.SIZE)\r\n" +
				"a006 FETCH $ BODY\r\n",
			[]string{
				`A654 FETCH 2:4 FLAGS BODY[HEADER.FIELDS (DATE FROM)]`,
				`a003 FETCH 12 FULL`,
				`a004 FETCH 12 BODY.PEEK[HEADER.FIELDS (FROM SUBJECT)]<0.100> UID`,
				`a005 FETCH 1:* BODY[1.2.MIME] BODY[3.HEADER.FIELDS.NOT (X-A)] BODY[] BINARY.PEEK[1]<0.10> BINARY.SIZE[2] RFC822.SIZE`,
				`a006 FETCH $ BODY`,
			}, nil},
		{"UID FETCH CHANGEDSINCE (RFC 7162 3.1.4.1, 3.2.6)",
			"s100 UID FETCH 1:* (FLAGS) (CHANGEDSINCE 12345)\r\n" +
				"s101 UID FETCH 300:500 (FLAGS) (CHANGEDSINCE 12345 VANISHED)\r\n" +
				"s102 UID FETCH 1:* (FLAGS) (CHANGEDSINCE 9223372036854775808)\r\n",
			[]string{
				`s100 UID FETCH 1:* FLAGS CHANGEDSINCE=12345`,
				`s101 UID FETCH 300:500 FLAGS CHANGEDSINCE=12345 VANISHED`,
				`s102 BAD`,
			}, nil},
		{"STORE (RFC 9051 6.4.6, RFC 7162 3.1.3)",
			"A003 STORE 2:4 +FLAGS (\\Deleted)\r\n" +
				"A004 STORE 2:4 +FLAGS.SILENT (\\Deleted $Junk)\r\n" +
				"A005 STORE 1 -flags \\Seen \\Flagged\r\n" +
				"a103 UID STORE 6,4,8 (UNCHANGEDSINCE 12121230045) +FLAGS.SILENT (\\Deleted)\r\n" +
				"A006 STORE 1 FLAGS ()\r\n" +
				"A007 STORE 1 FLAGZ (\\Seen)\r\n",
			[]string{
				`A003 STORE 2:4 +FLAGS \Deleted`,
				`A004 STORE 2:4 +FLAGS.SILENT \Deleted $Junk`,
				`A005 STORE 1 -FLAGS \Seen \Flagged`,
				`a103 UID STORE 6,4,8 UNCHANGEDSINCE=12121230045 +FLAGS.SILENT \Deleted`,
				`A006 STORE 1 FLAGS`,
				`A007 BAD`,
			}, nil},
		{"SEARCH (RFC 9051 6.4.4, RFC 7162 3.1.5)",
			"A282 SEARCH FLAGGED SINCE 1-Feb-1994 NOT FROM \"Smith\"\r\n" +
				"A283 SEARCH TEXT \"string not in mailbox\"\r\n" +
				"A284 SEARCH CHARSET UTF-8 TEXT {6}\r\nXX\xc3\xa9XX\r\n" +
				"A285 SEARCH OR (FROM alice SUBJECT \"hi there\") NOT (OR SEEN (DELETED UID 1:5,7))\r\n" +
				"A286 SEARCH RETURN (MIN COUNT) 2:* HEADER Message-ID <a@b> LARGER 100\r\n" +
				"a UID SEARCH MODSEQ \"/flags/\\\\draft\" all 620162338\r\n" +
				"A287 SEARCH OR SEEN\r\n" +
				"A288 SEARCH ((((ALL))))\r\n",
			[]string{
				`A282 SEARCH FLAGGED SINCE=1994-02-01 NOT FROM="Smith"`,
				`A283 SEARCH TEXT="string not in mailbox"`,
				`A284 SEARCH CHARSET=UTF-8 TEXT="XXéXX"`,
				`A285 SEARCH OR ( FROM="alice" SUBJECT="hi there" ) NOT ( OR SEEN ( DELETED UID=1:5,7 ) )`,
				`A286 SEARCH RETURN( MIN COUNT ) 2:* HEADER="Message-ID"="<a@b>" LARGER=100`,
				`a UID SEARCH MODSEQ entry="/flags/\\draft"/ALL=620162338`,
				`A287 BAD`,
				`A288 SEARCH ( ( ( ( ALL ) ) ) )`,
			}, []int64{6}},
		{"APPEND (RFC 9051 6.3.12, RFC 7888, RFC 3516)",
			"A003 APPEND saved-messages (\\Seen) {11}\r\nHello Joe\r\n\r\n" +
				"A004 APPEND INBOX (\\Seen \\Draft) \" 5-Jul-1994 02:57:12 -0700\" {5+}\r\nhello\r\n" +
				"A005 APPEND INBOX ~{3}\r\na\x00b\r\n" +
				"A006 APPEND INBOX \"05-Jul-1994 02:57:12 +0000\" {0}\r\n\r\n" +
				"A007 APPEND INBOX () {1}\r\nx\r\n",
			[]string{
				`A003 APPEND "saved-messages" flags=(\Seen) msg="Hello Joe\r\n"`,
				`A004 APPEND "INBOX" flags=(\Seen \Draft) date=1994-07-05T02:57:12-0700 msg+="hello"`,
				`A005 APPEND "INBOX" msg~="a\x00b"`,
				`A006 APPEND "INBOX" date=1994-07-05T02:57:12+0000 msg=""`,
				`A007 APPEND "INBOX" flags=() msg="x"`,
			}, []int64{11, 3, 0, 1}},
		{"MULTIAPPEND (RFC 3502)",
			"A003 APPEND saved-messages (\\Seen) {3}\r\none (\\Seen) \" 1-Jul-2002 22:35:42 -0700\" {3}\r\ntwo {5+}\r\nthree\r\n",
			[]string{`A003 APPEND "saved-messages" flags=(\Seen) msg="one" flags=(\Seen) date=2002-07-01T22:35:42-0700 msg="two" msg+="three"`},
			[]int64{3, 3}},
		{"CATENATE (RFC 4469)",
			"A003 APPEND Drafts (\\Seen \\Draft $MDNSent) CATENATE (URL \"/Drafts;UIDVALIDITY=385759045/;UID=20/;section=HEADER\" TEXT {4}\r\n\r\n\r\n URL \"/Drafts;UIDVALIDITY=385759045/;UID=20/;section=1.MIME\" TEXT ~{2+}\r\nx\x00)\r\n",
			[]string{`A003 APPEND "Drafts" flags=(\Seen \Draft $MDNSent) CATENATE url="/Drafts;UIDVALIDITY=385759045/;UID=20/;section=HEADER" text="\r\n\r\n" url="/Drafts;UIDVALIDITY=385759045/;UID=20/;section=1.MIME" text~+="x\x00"`},
			[]int64{4}},
		{"ENABLE, ID, LIST",
			"t ENABLE CONDSTORE QRESYNC\r\n" +
				"a023 ID (\"name\" \"sodr\" \"version\" \"19.34\" \"vendor\" \"Pink Floyd Music Limited\" \"os\" NIL)\r\n" +
				"a024 ID NIL\r\n" +
				"a025 ID ()\r\n" +
				"a026 ID (\"name\")\r\n" +
				"A101 LIST \"\" \"\"\r\nA202 LIST ~/Mail/ %\r\nA203 LIST \"\" INBOX.*\r\n",
			[]string{
				`t ENABLE CONDSTORE QRESYNC`,
				`a023 ID "name"="sodr" "version"="19.34" "vendor"="Pink Floyd Music Limited" "os"=NIL`,
				`a024 ID NIL`,
				`a025 ID`,
				`a026 BAD`,
				`A101 LIST "" ""`, `A202 LIST "~/Mail/" "%"`, `A203 LIST "" "INBOX.*"`,
			}, nil},
		{"SORT and THREAD (RFC 5256)",
			"A282 SORT (SUBJECT) UTF-8 SINCE 1-Feb-1994\r\n" +
				"A283 SORT (SUBJECT REVERSE DATE) UTF-8 ALL\r\n" +
				"A284 UID SORT (ARRIVAL) US-ASCII TEXT \"not in mailbox\"\r\n" +
				"A285 THREAD ORDEREDSUBJECT UTF-8 SINCE 5-MAR-2000\r\n" +
				"A286 UID THREAD REFERENCES US-ASCII TEXT \"gewp\" OR 1 2\r\n",
			[]string{
				`A282 SORT by( SUBJECT ) charset=UTF-8 SINCE=1994-02-01`,
				`A283 SORT by( SUBJECT REVERSE DATE ) charset=UTF-8 ALL`,
				`A284 UID SORT by( ARRIVAL ) charset=US-ASCII TEXT="not in mailbox"`,
				`A285 THREAD ORDEREDSUBJECT charset=UTF-8 SINCE=2000-03-05`,
				`A286 UID THREAD REFERENCES charset=US-ASCII TEXT="gewp" OR 1 2`,
			}, nil},
		{"errors and resynchronisation",
			"a FETCH 1 (FLAGS\r\n" +
				"b FETCH 0 FLAGS\r\n" +
				"c XYZZY {3+}\r\nabc more\r\n" +
				"d LOGIN {3}\r\n" + // refused by the handler before the literal? no: accepted
				"abc\r\n" +
				"e SEARCH UNKNOWNKEY {4}\r\n" + // BAD; the client never sends the literal
				"f FETCH 1:2 (FLAGS BODY[HEADER.FIELDS (A {3+}\r\nB\"C)])\r\n" +
				"g NOOP\r\n" +
				"h LOGIN a {5000+}\r\n" + strings.Repeat("p", 5000) + "\r\n" +
				"i NOOP\r\n",
			[]string{"a BAD", "b BAD", "c BAD", "d BAD", "e BAD",
				`f FETCH 1:2 FLAGS BODY[HEADER.FIELDS (A B"C)]`, "g NOOP", "h BAD [TOOBIG]", "i NOOP"},
			[]int64{3}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, conts := runTranscript(tc.in, Limits{})
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
			if fmt.Sprint(conts) != fmt.Sprint(tc.conts) && !(len(conts) == 0 && len(tc.conts) == 0) {
				t.Errorf("continuations %v, want %v", conts, tc.conts)
			}
		})
	}
}
