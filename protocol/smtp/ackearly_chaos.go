//go:build chaos_ack_early

package smtp

// The chaos suite's negative control (go build -tags chaos_ack_early): DATA
// answers 250 BEFORE the Deliver is committed, which breaks DESIGN.md's
// promise on purpose. The commit is proposed in the background a second
// later, so a node killed right after its 250 loses the message, and
// chaos's no-lost-ack check must say so. Never build a release with it.

import (
	"context"
	"log/slog"
	"time"

	"github.com/raftmail/raftmail/protocol/accept"
	"github.com/raftmail/raftmail/storage"
)

const ackEarly = true

// ackEarlyDelay is how long the background commit waits after the 250.
const ackEarlyDelay = time.Second

// commitLater proposes cmd after ackEarlyDelay, in the background.
func (ss *session) commitLater(cmd storage.Command, log *slog.Logger) {
	srv := ss.srv
	log.Warn("smtp: chaos_ack_early build: answering 250 before the commit")
	go func() {
		select {
		case <-time.After(ackEarlyDelay):
		case <-srv.ctx.Done():
			return
		}
		ctx, cancel := context.WithTimeout(srv.ctx, srv.cfg.CommitTimeout)
		defer cancel()
		if _, out, err := srv.cfg.Accept.Deliver(ctx, cmd, false); out != accept.Accepted {
			log.Error("smtp: chaos_ack_early build: late commit failed", "err", err)
		}
	}()
}
