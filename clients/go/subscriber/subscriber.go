// Package subscriber runs a wahook consumer-group subscription: it opens the
// Subscribe stream, hands each delivery to a handler, acks what the handler
// accepted, nacks what it refused (with the error), and reconnects with
// exponential backoff when the stream drops. Acks and nacks name each
// delivery's lease (its ack id); leases whose handler runs long are extended
// before their deadline, and the server's confirmations are counted (Stats).
// Copy it into a service, or import it.
package subscriber

import (
	"context"
	"errors"
	"io"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	wahookv1 "github.com/wahook/wahook/clients/go/wahookv1"
)

// Handler handles one delivered event. Returning nil acks it; returning an
// error nacks it (the error, cut to 1024 characters, is kept as the event's
// last error) so the group gets it again, until the group's
// max_delivery_attempts send it to the dead letters. Events arrive at least
// once: handle them idempotently by Event.Id.
type Handler func(ctx context.Context, d *wahookv1.Delivery) error

// Subscriber holds what a subscription needs. Options.ConsumerGroup is required.
type Subscriber struct {
	Client  wahookv1.EventServiceClient
	Options *wahookv1.SubscribeOptions
	// MinBackoff and MaxBackoff bound the wait between reconnects; the wait
	// doubles after each failed attempt and resets once a stream delivers.
	// Zero means 100 ms and 10 s, as the service documentation recommends.
	MinBackoff, MaxBackoff time.Duration
	// Logf, when set, receives one line per reconnect, and one per response
	// that says acks came too late (from the goroutine reading the stream).
	Logf func(format string, args ...any)
	// DrainTimeout is how long Run waits, when stopping, for the server to
	// confirm the final acks and end the stream. Zero means 2 s.
	DrainTimeout time.Duration
	// OnOpen, when set, is called (from its own goroutine) each time a stream
	// opens: the server sends its headers once the subscription is accepted.
	// A Run that never called it never reached the server.
	OnOpen func()
	// MaxExtension is how long a delivery's lease is kept extended while its
	// handler runs; after it the event may go to another subscriber. Zero
	// means 1 h.
	MaxExtension time.Duration

	counters counters
}

// Run subscribes until ctx is cancelled (returns nil) or the server rejects
// the subscription with a code retrying cannot fix (returns that error).
func (s *Subscriber) Run(ctx context.Context, h Handler) error {
	if s.Options == nil || s.Options.GetConsumerGroup() == "" {
		return errors.New("subscriber: Options.ConsumerGroup is required")
	}
	minB, maxB := orDefault(s.MinBackoff, 100*time.Millisecond), orDefault(s.MaxBackoff, 10*time.Second)
	backoff := minB
	for {
		delivered, err := s.session(ctx, h)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil && !retryable(err) {
			return err
		}
		if delivered {
			backoff = minB
		}
		s.logf("wahook: stream ended (%v); reconnecting in %v", err, backoff)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, maxB)
	}
}

// session runs one Subscribe stream. It reports whether any event arrived, so
// that Run resets its backoff only after a stream that worked.
func (s *Subscriber) session(ctx context.Context, h Handler) (delivered bool, err error) {
	// The stream gets its own context: cancelling ctx (a signal, or the handler
	// deciding it has had enough) must not cut the final acks off mid-flight.
	streamCtx, cancel := context.WithCancel(context.Background())
	defer cancel()
	opts := s.options()
	// The receive limit and the max_receive_bytes the server is told come from
	// one value: the server dead-letters what would not fit.
	stream, err := s.Client.Subscribe(streamCtx, grpc.MaxCallRecvMsgSize(int(opts.GetMaxReceiveBytes())))
	if err != nil {
		return false, err
	}
	// grpc-go allows one Send at a time: acks go from here, extensions from
	// the lease keeper's goroutine.
	var sendMu sync.Mutex
	send := func(req *wahookv1.SubscribeRequest) error {
		sendMu.Lock()
		defer sendMu.Unlock()
		return stream.Send(req)
	}
	if err := send(&wahookv1.SubscribeRequest{Options: opts}); err != nil {
		return false, recvErr(stream)
	}
	if s.OnOpen != nil {
		go func() {
			// Header waits for the headers; nil means the stream ended without any.
			if md, err := stream.Header(); err == nil && md != nil {
				s.OnOpen()
			}
		}()
	}

	deadline := ackDeadline(opts)
	l := newLeases(deadline, orDefault(s.MaxExtension, time.Hour), &s.counters)
	done := make(chan struct{})
	defer close(done)
	// Room for every delivery the server lets this stream hold (max_in_flight),
	// so the reader never blocks: it sees each delivery, and starts its lease,
	// as soon as it arrives, even while the handler is busy with an earlier one.
	batches := make(chan []*wahookv1.Delivery, maxInFlight(opts))
	ended := make(chan error, 1)
	go s.read(stream, l, batches, ended, done)
	stopExtending := keepLeases(l, send, deadline/4)
	defer stopExtending()
	for {
		select {
		case <-ctx.Done():
			s.drain(stream, l, &sendMu, stopExtending, batches, ended)
			return delivered, nil
		case err := <-ended:
			return delivered, err
		case batch := <-batches:
			delivered = true
			req := &wahookv1.SubscribeRequest{}
			for _, d := range batch {
				if ctx.Err() != nil {
					break // not handled, not acked: redelivered to the group later
				}
				l.answer(req, d, h(ctx, d))
			}
			// One request acks the whole batch: fewer messages, same guarantee.
			if len(req.AckIds)+len(req.AckSequences)+len(req.Nacks) > 0 {
				if err := send(req); err != nil {
					l.unsent(req)
					return delivered, <-ended // the reader sees why the stream ended
				}
			}
		}
	}
}

// read receives every response of the stream as it arrives: confirmations are
// counted, deliveries start their leases and go to the handler loop.
func (s *Subscriber) read(stream wahookv1.EventService_SubscribeClient, l *leases,
	batches chan<- []*wahookv1.Delivery, ended chan<- error, done <-chan struct{}) {
	for {
		resp, err := stream.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = status.Error(codes.Unavailable, "server ended the stream")
			}
			ended <- err
			return
		}
		if n := l.confirm(resp.GetConfirmation()); n > 0 {
			s.logf("wahook: %d acks or nacks came after their lease ended; those events are delivered again", n)
		}
		if ds := resp.GetDeliveries(); len(ds) > 0 {
			l.received(ds, time.Now())
			select {
			case batches <- ds:
			case <-done:
				return
			}
		}
	}
}

// keepLeases extends, every `every`, the leases that have less than half the
// ack deadline left, until the returned function is called.
func keepLeases(l *leases, send func(*wahookv1.SubscribeRequest) error, every time.Duration) (stop func()) {
	quit := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			select {
			case <-quit:
				return
			case now := <-tick.C:
				if req := l.extensions(now); req != nil {
					_ = send(req) // a failed send ends the stream: the reader reports it
				}
			}
		}
	}()
	var once sync.Once
	return func() { once.Do(func() { close(quit); wg.Wait() }) }
}

// drain waits for the server to confirm the acks already sent, half-closes the
// stream and waits for the server to end it, so that what the subscriber
// acked took effect (and was counted) before the connection goes away.
// Deliveries arriving now are left unacked: the group gets them again.
func (s *Subscriber) drain(stream wahookv1.EventService_SubscribeClient, l *leases, sendMu *sync.Mutex,
	stopExtending func(), batches <-chan []*wahookv1.Delivery, ended <-chan error) {
	timeout := time.After(orDefault(s.DrainTimeout, 2*time.Second))
	settled := l.whenSettled()
	for settled != nil {
		select {
		case <-settled:
			settled = nil
		case <-batches:
		case <-ended:
			return
		case <-timeout:
			return
		}
	}
	stopExtending()
	sendMu.Lock()
	err := stream.CloseSend()
	sendMu.Unlock()
	if err != nil {
		return
	}
	for {
		select {
		case <-batches:
		case <-ended:
			return
		case <-timeout:
			return
		}
	}
}

// options are the SubscribeOptions sent: Options, with max_receive_bytes
// defaulting to MaxReceiveBytes.
func (s *Subscriber) options() *wahookv1.SubscribeOptions {
	opts := proto.Clone(s.Options).(*wahookv1.SubscribeOptions)
	if opts.GetMaxReceiveBytes() == 0 {
		opts.MaxReceiveBytes = MaxReceiveBytes
	}
	return opts
}

// Stats returns what the server confirmed so far, over every stream.
func (s *Subscriber) Stats() Stats {
	return s.counters.snapshot()
}

func ackDeadline(opts *wahookv1.SubscribeOptions) time.Duration {
	if d := opts.GetAckDeadline().AsDuration(); opts.GetAckDeadline() != nil && d > 0 {
		return d
	}
	return 30 * time.Second // the server's default
}

func maxInFlight(opts *wahookv1.SubscribeOptions) int {
	if n := opts.GetMaxInFlight(); n > 0 {
		return int(n)
	}
	return 1000 // the server's default
}

// recvErr returns the status that ended a stream whose Send failed: grpc-go
// reports it on Recv, Send only says io.EOF.
func recvErr(stream wahookv1.EventService_SubscribeClient) error {
	for {
		if _, err := stream.Recv(); err != nil {
			if errors.Is(err, io.EOF) {
				return status.Error(codes.Unavailable, "server ended the stream")
			}
			return err
		}
	}
}

// retryable says whether a stream error is transient. INVALID_ARGUMENT,
// FAILED_PRECONDITION and the like are answers to a wrong request: retrying
// would repeat them forever.
func retryable(err error) bool {
	switch status.Code(err) {
	case codes.Unavailable, codes.Internal, codes.Unknown, codes.Aborted,
		codes.DeadlineExceeded, codes.ResourceExhausted, codes.Canceled:
		return true
	default:
		return false
	}
}

func (s *Subscriber) logf(format string, args ...any) {
	if s.Logf != nil {
		s.Logf(format, args...)
	}
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}
