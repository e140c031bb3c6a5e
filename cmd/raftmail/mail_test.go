package main

import "testing"

func TestLoopbackOnly(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:143":   true,
		"127.0.0.53:110":  true,
		"[::1]:143":       true,
		"localhost:143":   true,
		"0.0.0.0:143":     false,
		"[::]:143":        false,
		":143":            false,
		"192.0.2.10:143":  false,
		"mail.test:143":   false,
		"off":             false,
		"127.0.0.1":       false,
		"[::ffff:7f00:1]": false,
	} {
		if got := loopbackOnly(addr); got != want {
			t.Errorf("loopbackOnly(%q) = %v, want %v", addr, got, want)
		}
	}
}
