package subscriber

import (
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	wahookv1 "github.com/wahook/wahook/clients/go/wahookv1"
)

// MaxReceiveBytes is the largest message the subscriber accepts: the largest
// event a webhook body under the sidecar's default 4 MiB cap can become (its
// typed text and its raw JSON copy), plus room for framing: 2 x
// WAHOOK_MAX_BODY_BYTES + 1 MiB. Raise it with the cap. The server
// dead-letters an event larger than what a subscriber says it accepts.
const MaxReceiveBytes = 9 << 20

// maxNackError is the longest nack error the server accepts, in characters.
const maxNackError = 1024

// NackDelay is how long a failed event waits before it is delivered again: 1 s
// after the first attempt, doubling per attempt up to 1 min, so that a
// passing outage (a CRM answering 503) is ridden out instead of burning the
// group's max_delivery_attempts in a second.
func NackDelay(attempt uint32) time.Duration {
	if attempt > 7 {
		return time.Minute
	}
	return min(time.Second<<max(attempt, 1)>>1, time.Minute)
}

// Stats counts the lease operations the server confirmed
// (SubscribeResponse.confirmation).
type Stats struct {
	Acked, Nacked, Extended uint64
	// Expired counts acks, nacks and extensions that came after their lease
	// ended (the deadline passed, the stream ended, the group was sought):
	// the server ignored them and the event is delivered again.
	Expired uint64
}

// counters are Stats as the stream's goroutines update them.
type counters struct{ acked, nacked, extended, expired atomic.Uint64 }

func (c *counters) snapshot() Stats {
	return Stats{Acked: c.acked.Load(), Nacked: c.nacked.Load(), Extended: c.extended.Load(), Expired: c.expired.Load()}
}

// lease is one delivery this subscriber holds: received, not yet answered.
type lease struct {
	received time.Time
	due      time.Time // when the server delivers it again unless extended
}

// leases keeps the leases of one stream: the deliveries received and not
// acked or nacked yet, extended while they are held, and the ack ids sent and
// not yet confirmed by the server.
type leases struct {
	mu          sync.Mutex
	deadline    time.Duration // the stream's ack deadline; each extension asks for it again
	maxHold     time.Duration // no extension past this long after receipt
	held        map[string]lease
	unconfirmed map[string]struct{}
	stats       *counters
	settled     chan struct{} // closed when unconfirmed empties while someone waits
}

func newLeases(deadline, maxHold time.Duration, stats *counters) *leases {
	return &leases{
		deadline:    deadline,
		maxHold:     maxHold,
		held:        map[string]lease{},
		unconfirmed: map[string]struct{}{},
		stats:       stats,
	}
}

// received starts holding the deliveries of a response. The server's deadline
// for them began a little earlier (when it sent them); extensions start well
// before the deadline, so the difference does not matter.
func (l *leases) received(ds []*wahookv1.Delivery, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, d := range ds {
		if id := d.GetAckId(); id != "" {
			l.held[id] = lease{received: now, due: now.Add(l.deadline)}
		}
	}
}

// answer adds the ack or nack of one handled delivery to req, by ack id (by
// sequence for a server that gives none), and stops extending its lease.
func (l *leases) answer(req *wahookv1.SubscribeRequest, d *wahookv1.Delivery, herr error) {
	id := d.GetAckId()
	if id != "" {
		l.mu.Lock()
		delete(l.held, id)
		l.unconfirmed[id] = struct{}{}
		l.mu.Unlock()
	}
	switch {
	case herr == nil && id != "":
		req.AckIds = append(req.AckIds, id)
	case herr == nil:
		req.AckSequences = append(req.AckSequences, d.GetEvent().GetSequence())
	default:
		nack := &wahookv1.Nack{AckId: id, Delay: durationpb.New(NackDelay(d.GetAttempt())), Error: nackError(herr)}
		if id == "" {
			nack.Sequence = d.GetEvent().GetSequence()
		}
		req.Nacks = append(req.Nacks, nack)
	}
}

// unsent puts back ack ids of a request that could not be sent: no
// confirmation will come for them (the stream ended; the events come again).
func (l *leases) unsent(req *wahookv1.SubscribeRequest) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, id := range req.GetAckIds() {
		delete(l.unconfirmed, id)
	}
	for _, n := range req.GetNacks() {
		delete(l.unconfirmed, n.GetAckId())
	}
}

// extensions returns a request extending every lease held with less than half
// the ack deadline left (nil when none is), and counts them as extended.
func (l *leases) extensions(now time.Time) *wahookv1.SubscribeRequest {
	l.mu.Lock()
	defer l.mu.Unlock()
	var req *wahookv1.SubscribeRequest
	for id, h := range l.held {
		if h.due.Sub(now) >= l.deadline/2 || now.Sub(h.received) >= l.maxHold {
			continue
		}
		if req == nil {
			req = &wahookv1.SubscribeRequest{}
		}
		req.ModifyDeadlines = append(req.ModifyDeadlines, &wahookv1.ModifyDeadline{
			AckId: id, Deadline: durationpb.New(l.deadline),
		})
		l.held[id] = lease{received: h.received, due: now.Add(l.deadline)}
	}
	return req
}

// confirm applies a LeaseConfirmation: counts it, forgets the ack ids it
// settles, and stops extending leases that ended. It returns how many expired.
func (l *leases) confirm(c *wahookv1.LeaseConfirmation) int {
	if c == nil {
		return 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.stats.acked.Add(uint64(len(c.GetAckedIds())))
	l.stats.nacked.Add(uint64(len(c.GetNackedIds())))
	l.stats.extended.Add(uint64(len(c.GetModifiedIds())))
	l.stats.expired.Add(uint64(len(c.GetExpiredIds())))
	for _, ids := range [][]string{c.GetAckedIds(), c.GetNackedIds(), c.GetExpiredIds()} {
		for _, id := range ids {
			delete(l.unconfirmed, id)
		}
	}
	for _, id := range c.GetExpiredIds() {
		delete(l.held, id) // the event comes again; its handler's answer will expire too
	}
	if len(l.unconfirmed) == 0 && l.settled != nil {
		close(l.settled)
		l.settled = nil
	}
	return len(c.GetExpiredIds())
}

// whenSettled returns a channel closed once every ack and nack sent so far is
// confirmed (already closed when none is outstanding).
func (l *leases) whenSettled() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	ch := make(chan struct{})
	if len(l.unconfirmed) == 0 {
		close(ch)
		return ch
	}
	if l.settled == nil {
		l.settled = ch
	}
	return l.settled
}

// nackError is the handler's error as the nack's reason, cut to what the
// server accepts.
func nackError(err error) string {
	r := []rune(err.Error())
	if len(r) > maxNackError {
		r = r[:maxNackError]
	}
	return string(r)
}
