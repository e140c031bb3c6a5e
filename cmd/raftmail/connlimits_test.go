package main

import (
	"bytes"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/spf13/pflag"
)

// loadWith runs loadNodeConfig on a fresh data directory with args.
func loadWith(t *testing.T, args ...string) (*nodeConfig, error) {
	t.Helper()
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	fs.String("data-dir", "", "")
	fs.String("config", "", "")
	addNodeFlags(fs)
	if err := fs.Parse(append([]string{"--data-dir", t.TempDir()}, args...)); err != nil {
		t.Fatal(err)
	}
	return loadNodeConfig(fs)
}

func TestConnLimitSettings(t *testing.T) {
	cfg, err := loadWith(t)
	if err != nil {
		t.Fatal(err)
	}
	got := cfg.connLimitSettings()
	want := []connLimitSetting{{"smtp", 50, 1000}, {"submission", 20, 500}, {"imap", 50, 8000}, {"pop3", 20, 1000}}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("default %v, want %v", got[i], want[i])
		}
	}
	if cfg.ConnLimitExempt != "127.0.0.0/8,::1" {
		t.Errorf("default exempt %q", cfg.ConnLimitExempt)
	}

	toml := filepath.Join(t.TempDir(), "node.toml")
	if err := os.WriteFile(toml, []byte("imap_conn_limit_per_ip = 9\nsmtp_conn_limit = 77\nimap_preauth_timeout = \"15s\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("RAFTMAIL_POP3_CONN_LIMIT_PER_IP", "3")
	t.Setenv("RAFTMAIL_SMTP_CONN_LIMIT", "88")
	cfg, err = loadWith(t, "--config", toml, "--imap-conn-limit", "7", "--conn-limit-exempt", "", "--imap-idle-timeout", "31m")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.IMAPConnLimit != 7 || cfg.IMAPConnLimitPerIP != 9 || cfg.POP3ConnLimitPerIP != 3 || cfg.SMTPConnLimit != 88 ||
		cfg.ConnLimitExempt != "" || cfg.IMAPPreAuthTimeout.String() != "15s" || cfg.IMAPIdleTimeout.String() != "31m0s" {
		t.Fatalf("flags, environment and file not applied in order: %+v", cfg)
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--smtp-conn-limit", "0"}, "--smtp-conn-limit (smtp_conn_limit) 0: want at least 1"},
		{[]string{"--pop3-conn-limit-per-ip", "-1"}, "--pop3-conn-limit-per-ip (pop3_conn_limit_per_ip) -1"},
		{[]string{"--conn-limit-exempt", "10.0.0.0/33"}, "--conn-limit-exempt (conn_limit_exempt)"},
		{[]string{"--imap-preauth-timeout", "-1s"}, "--imap-preauth-timeout -1s"},
	} {
		if _, err := loadWith(t, tc.args...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want one with %q", tc.args, err, tc.want)
		}
	}
}

func TestFdBudget(t *testing.T) {
	for _, tc := range []struct {
		limit uint64
		want  int
	}{{20000, 17952}, {1 << 20, 1<<20 - 2048}, {4096, 2048}, {1024, 512}, {^uint64(0), 1<<31 - 1}} {
		if got := fdBudget(tc.limit); got != tc.want {
			t.Errorf("fdBudget(%d) = %d, want %d", tc.limit, got, tc.want)
		}
	}
}

// TestConnLimitersFitDescriptors runs in a child process whose hard
// RLIMIT_NOFILE is 4096: the default node caps (10,500 together) are
// scaled down to the 2048 descriptors left after the reserve, with a
// warning saying how to raise the limit; a protocol whose listeners are
// off is left out.
func TestConnLimitersFitDescriptors(t *testing.T) {
	if os.Getenv("RAFTMAIL_TEST_RLIMIT_CHILD") != "1" {
		cmd := exec.Command(os.Args[0], "-test.run=^TestConnLimitersFitDescriptors$", "-test.v")
		cmd.Env = append(os.Environ(), "RAFTMAIL_TEST_RLIMIT_CHILD=1")
		out, err := cmd.CombinedOutput()
		if err != nil || !bytes.Contains(out, []byte("--- PASS")) {
			t.Fatalf("child: %v\n%s", err, out)
		}
		return
	}
	lim := syscall.Rlimit{Cur: 1024, Max: 4096}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Skipf("cannot set RLIMIT_NOFILE: %v", err)
	}
	cfg := defaultNodeConfig()
	cfg.POP3Addr, cfg.POP3SAddr = "off", "off"
	var buf bytes.Buffer
	ls, err := newConnLimiters(&cfg, slog.New(slog.NewTextHandler(&buf, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := ls["pop3"]; ok || len(ls) != 3 {
		t.Fatalf("limiters %v, want smtp, submission and imap", ls)
	}
	// 1000 + 500 + 8000 = 9500 into 2048.
	for p, want := range map[string]int{"smtp": 215, "submission": 107, "imap": 1724} {
		if _, got := ls[p].Caps(); got != want {
			t.Errorf("%s node cap %d, want %d", p, got, want)
		}
	}
	if perIP, _ := ls["imap"].Caps(); perIP != 50 {
		t.Errorf("imap per-IP cap %d, want 50 (not scaled)", perIP)
	}
	for _, want := range []string{"level=WARN", "rlimit_nofile=4096", "LimitNOFILE=11548", "--ulimit nofile=11548:11548", `imap="1724 (configured 8000)"`} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, buf.String())
		}
	}
}
