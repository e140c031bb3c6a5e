//go:build !chaos_ack_early

package smtp

import (
	"log/slog"

	"github.com/raftmail/raftmail/storage"
)

// ackEarly is true only in a binary built with -tags chaos_ack_early: the
// chaos suite's negative control, which answers 250 before the commit to
// prove that the suite's checker catches a lost acknowledged message (see
// ackearly_chaos.go). Never true in a real build.
const ackEarly = false

// commitLater is never called in a real build.
func (ss *session) commitLater(storage.Command, *slog.Logger) {}
