package chaos

// Outbound mail through the sink (sink.go): the wait for the outbound
// queue to drain after the traffic, and the outbound-delivered invariant.

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/raftmail/raftmail/storage"
)

// InvOutboundDelivered names the outbound invariant; see checkOutbound.
const InvOutboundDelivered = "outbound-delivered"

// OutboundDrainTimeout bounds the wait for the outbound queue to drain
// after the traffic stopped.
const OutboundDrainTimeout = 30 * time.Second

// OutboundRecord is what the sink saw and what the queue still held: the
// History's record of outbound mail (nil when the backend ran no sink).
type OutboundRecord struct {
	Received []SinkMsg `json:"received"`
	Refused  []SinkMsg `json:"refused,omitempty"`
	// Dropped counts messages the sink answered 250 and forgot (a
	// negative control's OutsideOptions.DropAfterAck).
	Dropped int `json:"dropped,omitempty"`
	// WaitMillis is how long the wait for the queue to drain took;
	// Drained whether it did (no entry for an outside domain left).
	WaitMillis int64 `json:"wait_ms"`
	Drained    bool  `json:"drained"`
	// Healthy: the cluster converged after the wait, so an entry still
	// queued is the queue's fault, not a node's.
	Healthy bool `json:"healthy"`
	// Queue is what the queue still held at the end of the wait, as one
	// node read it.
	Queue []QueueItem `json:"queue,omitempty"`
}

// QueueItem is one outbound queue entry left after the wait, with what
// says why it is still there.
type QueueItem struct {
	ChaosID     string    `json:"chaos_id"`
	Rcpt        string    `json:"rcpt"`
	Status      string    `json:"status"`
	LastReply   string    `json:"last_reply,omitempty"`
	LastError   string    `json:"last_error,omitempty"`
	Attempts    int       `json:"attempts"`
	NextAttempt time.Time `json:"next_attempt"`
	LeaseNode   string    `json:"lease_node,omitempty"`
	LeaseUntil  time.Time `json:"lease_until,omitzero"`
}

func (q QueueItem) String() string {
	s := fmt.Sprintf("%s %s after %d attempt(s)", q.Rcpt, q.Status, q.Attempts)
	if q.LeaseNode != "" && !q.LeaseUntil.IsZero() {
		s += fmt.Sprintf(", leased to %s until %s", q.LeaseNode, q.LeaseUntil.Format("15:04:05.000"))
	}
	if why := cmpOr(q.LastReply, q.LastError); why != "" {
		s += ": " + why
	}
	return s
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// outsideQueue lists the queue entries of outside domains, one item per
// recipient there, merged over every node that answers; nil and an
// error if fewer than a majority answered.
func outsideQueue(ctx context.Context, nodes []NodeInfo) ([]QueueItem, error) {
	// Every node's queue, merged: a node that lags (restarted, or just
	// healed) may not show an entry committed a moment ago, so "drained"
	// on one node is not drained. A majority must answer.
	var last error
	answered := 0
	items := []QueueItem{}
	seen := map[string]bool{}
	for _, n := range nodes {
		var q []storage.QueueEntry
		if err := adminClient(n, 5*time.Second).Do(ctx, "GET", "/v1/queue", nil, &q); err != nil {
			last = fmt.Errorf("%s: %w", n.Name, err)
			continue
		}
		answered++
		for _, e := range q {
			for _, r := range e.Recipients {
				local, domain, _ := strings.Cut(r.Address, "@")
				if !isOutside(domain) || seen[e.ID+" "+r.Address] {
					continue
				}
				seen[e.ID+" "+r.Address] = true
				items = append(items, QueueItem{
					ChaosID: strings.TrimPrefix(local, "chaos-"), Rcpt: r.Address, Status: r.Status,
					LastReply: r.LastReply, LastError: e.LastError, Attempts: e.Attempts,
					NextAttempt: e.NextAttempt, LeaseNode: e.LeaseNode, LeaseUntil: e.LeaseUntil,
				})
			}
		}
	}
	if answered*2 <= len(nodes) {
		return nil, fmt.Errorf("%d of %d nodes answered: %w", answered, len(nodes), last)
	}
	return items, nil
}

// waitOutbound polls the queue every 250 ms until it holds no entry for
// an outside domain, for up to limit, and returns the record of the wait
// (Healthy is left to the caller).
func waitOutbound(ctx context.Context, nodes []NodeInfo, limit time.Duration) OutboundRecord {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	var rec OutboundRecord
	for {
		items, err := outsideQueue(ctx, nodes)
		if err == nil {
			rec.Queue = items
			if len(items) == 0 {
				rec.Drained = true
				break
			}
		}
		if wait(ctx, 250*time.Millisecond) != nil {
			break
		}
	}
	rec.WaitMillis = time.Since(start).Milliseconds()
	return rec
}

// dsnChaosIDs returns the chaos IDs a delivery status notification names
// as failed recipients (Final-Recipient: rfc822; chaos-ID@domain), or nil
// if raw is not a DSN (multipart/report; report-type=delivery-status).
func dsnChaosIDs(raw []byte) []string {
	head, body, ok := bytes.Cut(raw, []byte("\r\n\r\n"))
	if !ok || !bytes.Contains(bytes.ToLower(head), []byte("report-type=delivery-status")) {
		return nil
	}
	var out []string
	for _, line := range strings.Split(string(body), "\r\n") {
		name, value, ok := strings.Cut(line, ":")
		if !ok || !strings.EqualFold(strings.TrimSpace(name), "Final-Recipient") {
			continue
		}
		_, addr, _ := strings.Cut(value, ";")
		local, _, _ := strings.Cut(strings.TrimSpace(addr), "@")
		if id, ok := strings.CutPrefix(local, "chaos-"); ok && id != "" && !slices.Contains(out, id) {
			out = append(out, id)
		}
	}
	return out
}

// OutboundFigures are a run's outbound counts for the summary.
type OutboundFigures struct {
	// Sent: remote sends answered 250 (to every outside domain).
	Sent int `json:"sent"`
	// Delivered: of those, the ones the sink took at least once.
	Delivered int `json:"delivered"`
	// Duplicates: copies the sink took beyond the first of a message.
	Duplicates int `json:"duplicates"`
	// Bounced: sends to BounceDomain whose sender got a DSN.
	Bounced int `json:"bounced"`
	// Queued: outside recipients still in the queue after the wait.
	Queued int `json:"queued"`
}

func (f OutboundFigures) String() string {
	return fmt.Sprintf("outbound=%d delivered=%d dup=%d bounced=%d queued=%d", f.Sent, f.Delivered, f.Duplicates, f.Bounced, f.Queued)
}

// outboundView is what the invariant and the figures are computed from.
type outboundView struct {
	acked    []*Op                      // remote sends answered OK, first per chaos ID, in op order
	sends    map[string][]*Op           // chaos ID -> remote sends of it
	received map[string][]SinkMsg       // chaos ID -> what the sink took
	dsns     map[string]map[string]bool // chaos ID -> accounts holding a DSN naming it, in any read or final state
	queued   map[string]QueueItem
}

func newOutboundView(h History) outboundView {
	v := outboundView{sends: map[string][]*Op{}, received: map[string][]SinkMsg{}, dsns: map[string]map[string]bool{}, queued: map[string]QueueItem{}}
	for i := range h.Ops {
		op := &h.Ops[i]
		if op.Kind != OpSend || !op.Remote || op.ChaosID == "" {
			continue
		}
		if op.Outcome == OK && !slices.ContainsFunc(v.sends[op.ChaosID], func(o *Op) bool { return o.Outcome == OK }) {
			v.acked = append(v.acked, op)
		}
		v.sends[op.ChaosID] = append(v.sends[op.ChaosID], op)
	}
	if h.Outbound == nil {
		return v
	}
	for _, m := range h.Outbound.Received {
		v.received[m.ChaosID] = append(v.received[m.ChaosID], m)
	}
	note := func(acct string, m Msg) {
		for _, id := range m.DSNFor {
			if v.dsns[id] == nil {
				v.dsns[id] = map[string]bool{}
			}
			v.dsns[id][acctKey(acct)] = true
		}
	}
	for _, op := range h.Ops {
		for _, m := range op.Seen {
			note(op.Account, m)
		}
	}
	for _, n := range h.Final {
		for _, mb := range n.Mailboxes {
			for _, m := range mb.Messages {
				note(mb.Account, m)
			}
		}
	}
	for _, q := range h.Outbound.Queue {
		v.queued[q.ChaosID] = q
	}
	return v
}

func domainOfAddr(addr string) string {
	_, d, _ := strings.Cut(addr, "@")
	return strings.ToLower(d)
}

// outboundFigures computes the summary's outbound counts; nil without a
// sink.
func outboundFigures(h History) *OutboundFigures {
	if h.Outbound == nil {
		return nil
	}
	v := newOutboundView(h)
	f := &OutboundFigures{Sent: len(v.acked), Queued: len(h.Outbound.Queue)}
	for _, op := range v.acked {
		if n := len(v.received[op.ChaosID]); n > 0 {
			f.Delivered++
		}
		if domainOfAddr(op.Rcpt) == BounceDomain && v.dsns[op.ChaosID][acctKey(op.From)] {
			f.Bounced++
		}
	}
	for _, ms := range v.received {
		f.Duplicates += len(ms) - 1
	}
	return f
}

// checkOutbound is the outbound-delivered invariant (run only when the
// history has a sink record):
//
//   - every remote send answered 250 to RemoteDomain or DeferDomain was
//     taken by the sink at least once, with the body hash sent; one still
//     in the queue after the wait is a violation too when the cluster was
//     healthy (the example says why it is there: its last reply, lease
//     and attempts), else it is reported as not judged;
//   - every send answered 250 to BounceDomain was never taken by the sink,
//     and its sender holds at least one DSN naming it (in a read during
//     the run or in a final state: the traffic may expunge it later);
//   - the sink took nothing that no send carried or whose every send was
//     refused (a phantom), and every DSN names a bounce-domain send;
//   - copies beyond the first are counted, not violations: delivery is
//     at-least-once (a node that dies or loses its quorum after the
//     remote's 250 and before committing the result leaves the entry to
//     be delivered again once its lease expires).
func checkOutbound(h History) CheckResult {
	c := collector{name: InvOutboundDelivered}
	if h.Outbound == nil {
		c.info = "no sink ran: remote mail was only checked to be in the outbound queue (no-lost-ack)"
		return c.result()
	}
	v := newOutboundView(h)
	ix := &index{base: historyBase(h)}
	notJudged, skewed := 0, 0
	// A node whose clock ran ahead schedules retries and leases that much
	// later (Raftmail's queue times are the proposer's wall clock): an
	// entry waiting for such a time is explained, not stuck.
	var skew time.Duration
	for _, f := range h.Faults {
		skew = max(skew, f.Skew)
	}
	waitEnd := h.End.Add(time.Duration(h.Outbound.WaitMillis) * time.Millisecond)
	byClock := func(q QueueItem) bool {
		later := q.NextAttempt
		if q.LeaseUntil.After(later) {
			later = q.LeaseUntil
		}
		return skew > 0 && later.After(waitEnd) && later.Sub(waitEnd) <= skew
	}
	for _, op := range v.acked {
		got := v.received[op.ChaosID]
		q, queued := v.queued[op.ChaosID]
		if domainOfAddr(op.Rcpt) == BounceDomain {
			if len(got) > 0 {
				c.add("%s: message %s to %s was taken by the sink (%s), but its MX refuses every recipient", ix.describeSend(op), op.ChaosID, op.Rcpt, got[0].Reply)
			}
			switch {
			case v.dsns[op.ChaosID][acctKey(op.From)]:
			case queued && !h.Outbound.Healthy:
				notJudged++
			case queued && byClock(q):
				skewed++
			case queued:
				c.add("%s: message %s to %s still queued %ds after the traffic, the cluster healthy: %s", ix.describeSend(op), op.ChaosID, op.Rcpt, h.Outbound.WaitMillis/1000, q)
			default:
				c.add("%s: message %s to %s left the queue, but its sender %s holds no DSN naming it", ix.describeSend(op), op.ChaosID, op.Rcpt, op.From)
			}
			continue
		}
		switch {
		case len(got) > 0:
			if !slices.ContainsFunc(got, func(m SinkMsg) bool { return m.BodyHash == op.BodyHash }) {
				c.add("%s: message %s reached the sink with body hash %s, sent with %s", ix.describeSend(op), op.ChaosID, short(got[0].BodyHash), short(op.BodyHash))
			}
		case queued && !h.Outbound.Healthy:
			notJudged++
		case queued && byClock(q):
			skewed++
		case queued:
			c.add("%s: message %s to %s still queued %ds after the traffic, the cluster healthy: %s", ix.describeSend(op), op.ChaosID, op.Rcpt, h.Outbound.WaitMillis/1000, q)
		default:
			c.add("%s: message %s to %s lost: it left the queue, and the sink never took it", ix.describeSend(op), op.ChaosID, op.Rcpt)
		}
	}
	for _, id := range slices.Sorted(maps.Keys(v.received)) {
		ms, sends := v.received[id], v.sends[id]
		switch {
		case len(sends) == 0:
			c.add("the sink took phantom message %q from %s (%s): no remote send carried it", id, cmpOr(ms[0].Node, ms[0].Remote), strings.Join(ms[0].Rcpts, ","))
		case !slices.ContainsFunc(sends, func(op *Op) bool { return op.Outcome != Fail }):
			c.add("the sink took message %s, but every send of it was refused (ops %s, code %d)", id, opIDs(sends), sends[0].Code)
		}
	}
	for _, id := range slices.Sorted(maps.Keys(v.dsns)) {
		accts := v.dsns[id]
		if !slices.ContainsFunc(v.sends[id], func(op *Op) bool {
			return op.Outcome != Fail && domainOfAddr(op.Rcpt) == BounceDomain
		}) {
			c.add("a DSN in %s names message %s, which no send to %s that may have been taken carried", strings.Join(slices.Sorted(maps.Keys(accts)), ","), id, BounceDomain)
		}
	}
	f := outboundFigures(h)
	c.info = fmt.Sprintf("%s (duplicates are not violations: delivery is at-least-once); waited %s for the queue", f, fmtMillis(h.Outbound.WaitMillis))
	if h.Outbound.Dropped > 0 {
		c.info += fmt.Sprintf("; the sink dropped %d message(s) after its 250 (negative control)", h.Outbound.Dropped)
	}
	if notJudged > 0 {
		c.info += fmt.Sprintf("; %d still queued, not judged: the cluster did not converge", notJudged)
	}
	if skewed > 0 {
		c.info += fmt.Sprintf("; %d still queued for a retry or lease a node scheduled while its clock was up to %s ahead", skewed, skew)
	}
	return c.result()
}

// remoteDomain picks the domain of a remote send: BounceDomain and
// DeferDomain each with OutsideShare, else RemoteDomain. No random draw
// without OutsideShare, so runs without a sink keep their choices.
func (t *Traffic) remoteDomain(rng interface{ Float64() float64 }) string {
	if t.cfg.OutsideShare <= 0 {
		return RemoteDomain
	}
	switch x := rng.Float64(); {
	case x < t.cfg.OutsideShare:
		return BounceDomain
	case x < 2*t.cfg.OutsideShare:
		return DeferDomain
	}
	return RemoteDomain
}

// The delivery settings of a cluster with an Outside: a node that dies
// holding a lease gives its entries up after outsideLease, and a deferred
// entry is tried again after outsideRetry, both well within
// OutboundDrainTimeout.
const (
	outsideLease = 10 * time.Second
	outsideRetry = 2 * time.Second
)

// outsideFlags are the serve flags for o.Outside (the caller has set
// o.DNSResolver to the address the node reaches it at); none without one.
func outsideFlags(o LaunchOptions) []string {
	if o.Outside == nil {
		return nil
	}
	return []string{"--smtp-out-port", strconv.Itoa(o.Outside.SMTPPort()),
		"--delivery-lease", outsideLease.String(), "--delivery-retry", outsideRetry.String()}
}

// startOutside starts the sink for a scenario when asked and the backend
// reaches it; nil and why not otherwise.
func startOutside(l Launcher, opts RunOptions) (*Outside, string) {
	if opts.NoSink {
		return nil, "no outbound sink (asked for none): remote mail is checked in the queue"
	}
	r, ok := l.(OutsideReacher)
	if !ok {
		return nil, "no outbound sink on this backend: remote mail is checked in the queue"
	}
	if err := r.ReachesOutside(); err != nil {
		return nil, err.Error() + ": remote mail is checked in the queue"
	}
	o, err := StartOutside(opts.Sink)
	if err != nil {
		return nil, fmt.Sprintf("no outbound sink (%v): remote mail is checked in the queue", err)
	}
	return o, ""
}

// waitOutboundLogged is waitOutbound with OutboundDrainTimeout, logged.
func waitOutboundLogged(ctx context.Context, nodes []NodeInfo, logf func(string, ...any)) *OutboundRecord {
	r := waitOutbound(ctx, nodes, OutboundDrainTimeout)
	if r.Drained {
		logf("outbound queue drained %s after the traffic stopped", fmtMillis(r.WaitMillis))
	} else {
		logf("outbound queue still holds %d outside recipient(s) after %s", len(r.Queue), fmtMillis(r.WaitMillis))
	}
	return &r
}
