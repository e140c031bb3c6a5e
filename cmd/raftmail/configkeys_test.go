package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/raftmail/raftmail/protocol/smtp"
)

func TestNearestKey(t *testing.T) {
	known := configKeys()
	for _, k := range []string{"smtp_addr", "cluster_addr", "dead_server_grace", "authserv_id"} {
		if !strings.Contains(strings.Join(known, " "), k) {
			t.Fatalf("configKeys lacks %s: %v", k, known)
		}
	}
	for _, tc := range []struct{ key, want string }{
		{"smtp_adr", "smtp_addr"},
		{"smtp-addr", "smtp_addr"},
		{"SMTP_ADDR", "smtp_addr"},
		{"imaps_adr", "imaps_addr"},
		{"dead_server_grase", "dead_server_grace"},
		{"shutdown_timout", "shutdown_timeout"},
		{"zzz", ""},
		{"a", ""},
		{"smtp", ""},
		{"completely_unrelated_thing", ""},
	} {
		if got := nearestKey(tc.key, known); got != tc.want {
			t.Errorf("nearestKey(%q) = %q, want %q", tc.key, got, tc.want)
		}
	}
}

// TestUnknownConfigKey: a key the configuration does not have, in the
// --config file or in the data directory's raftmail.toml, is an error
// naming it and the nearest key. On the old code smtp_adr was ignored
// and the MX listener stayed on 0.0.0.0:25.
func TestUnknownConfigKey(t *testing.T) {
	write := func(t *testing.T, path, text string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	for _, tc := range []struct{ name, text, want string }{
		{"typo", "smtp_adr = \"127.0.0.1:2525\"\n", "unknown key smtp_adr in %s: did you mean smtp_addr?"},
		{"no near key", "colour = \"blue\"\n", "unknown key colour in %s: the keys are the flags"},
		{"table", "[smtp]\naddr = \"127.0.0.1:2525\"\nport = 1\n", "unknown key smtp in %s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "_")+".toml")
			write(t, path, "smtp_conn_limit = 10\n"+tc.text)
			_, err := loadWith(t, "--config", path)
			want := strings.ReplaceAll(tc.want, "%s", path)
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Fatalf("err %v, want it to contain %q", err, want)
			}
			if strings.Count(err.Error(), "unknown key") != 1 {
				t.Errorf("want one unknown key named: %v", err)
			}
		})
	}

	// A raftmail.toml written by save reads back without complaint; with
	// a key added by hand, it is refused the same way.
	cfg, err := loadWith(t)
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.save(); err != nil {
		t.Fatal(err)
	}
	if _, err := loadWith(t, "--data-dir", cfg.dataDir); err != nil {
		t.Fatalf("a saved configuration does not load: %v", err)
	}
	f, err := os.OpenFile(cfg.path(configFile), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("gossip_adress = \"127.0.0.1:7946\"\n"); err != nil {
		t.Fatal(err)
	}
	f.Close()
	_, err = loadWith(t, "--data-dir", cfg.dataDir)
	if want := "unknown key gossip_adress in " + cfg.path(configFile) + ": did you mean gossip_addr?"; err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("err %v, want it to contain %q", err, want)
	}
}

func TestSubmissionSenderCheckSetting(t *testing.T) {
	check := func(t *testing.T, want smtp.SenderCheck, args ...string) {
		t.Helper()
		cfg, err := loadWith(t, args...)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := cfg.senderCheck(); err != nil || got != want {
			t.Errorf("%v: sender check %v, %v; want %v", args, got, err, want)
		}
	}
	check(t, smtp.SenderCheckBoth)
	check(t, smtp.SenderCheckEnvelope, "--submission-sender-check", "envelope")
	conf := filepath.Join(t.TempDir(), "c.toml")
	if err := os.WriteFile(conf, []byte("submission_sender_check = \"header\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	check(t, smtp.SenderCheckHeader, "--config", conf)
	t.Setenv("RAFTMAIL_SUBMISSION_SENDER_CHECK", "off")
	check(t, smtp.SenderCheckOff, "--config", conf)
	if _, err := loadWith(t, "--submission-sender-check", "strict"); err == nil || !strings.Contains(err.Error(), `--submission-sender-check (submission_sender_check) "strict": want both, envelope, header or off`) {
		t.Errorf("a bad value: %v", err)
	}
}
