// Package subscriber runs a wahook consumer-group subscription: it opens the
// Subscribe stream, hands each delivery to a handler, acks what the handler
// accepted, nacks what it refused, and reconnects with exponential backoff
// when the stream drops. Copy it into a service, or import it.
package subscriber

import (
	"context"
	"errors"
	"io"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	wahookv1 "github.com/wahook/wahook/clients/go/wahookv1"
)

// Handler handles one delivered event. Returning nil acks it; returning an
// error nacks it so the group gets it again. Events arrive at least once:
// handle them idempotently by Event.Id.
type Handler func(ctx context.Context, d *wahookv1.Delivery) error

// Subscriber holds what a subscription needs. Options.ConsumerGroup is required.
type Subscriber struct {
	Client  wahookv1.EventServiceClient
	Options *wahookv1.SubscribeOptions
	// MinBackoff and MaxBackoff bound the wait between reconnects; the wait
	// doubles after each failed attempt and resets once a stream delivers.
	// Zero means 100 ms and 10 s, as the service documentation recommends.
	MinBackoff, MaxBackoff time.Duration
	// Logf, when set, receives one line per reconnect.
	Logf func(format string, args ...any)
	// DrainTimeout is how long Run waits, when stopping, for the server to end
	// the stream after the final acks were sent. Zero means 2 s.
	DrainTimeout time.Duration
	// OnOpen, when set, is called (from its own goroutine) each time a stream
	// opens: the server sends its headers once the subscription is accepted.
	// A Run that never called it never reached the server.
	OnOpen func()
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
	stream, err := s.Client.Subscribe(streamCtx)
	if err != nil {
		return false, err
	}
	if err := stream.Send(&wahookv1.SubscribeRequest{Options: s.Options}); err != nil {
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

	results := make(chan result, 1)
	// Recv runs in a goroutine so that a stop request is seen at once, not
	// after the next heartbeat.
	recv := func() {
		resp, err := stream.Recv()
		results <- result{resp, err}
	}
	go recv()
	for {
		select {
		case <-ctx.Done():
			s.drain(stream, results)
			return delivered, nil
		case r := <-results:
			if r.err != nil {
				if errors.Is(r.err, io.EOF) {
					return delivered, status.Error(codes.Unavailable, "server ended the stream")
				}
				return delivered, r.err
			}
			req := &wahookv1.SubscribeRequest{}
			for _, d := range r.resp.GetDeliveries() {
				delivered = true
				if ctx.Err() != nil {
					break // not handled, not acked: redelivered to the group later
				}
				if herr := h(ctx, d); herr != nil {
					req.Nacks = append(req.Nacks, &wahookv1.Nack{Sequence: d.GetEvent().GetSequence()})
				} else {
					req.AckSequences = append(req.AckSequences, d.GetEvent().GetSequence())
				}
			}
			// One request acks the whole batch: fewer messages, same guarantee.
			if len(req.AckSequences)+len(req.Nacks) > 0 {
				if err := stream.Send(req); err != nil {
					return delivered, recvErr(stream)
				}
			}
			go recv()
		}
	}
}

// drain half-closes the stream and waits for the server to end it, so acks
// already sent are processed before the connection goes away.
func (s *Subscriber) drain(stream wahookv1.EventService_SubscribeClient, results chan result) {
	if err := stream.CloseSend(); err != nil {
		return
	}
	timeout := time.After(orDefault(s.DrainTimeout, 2*time.Second))
	for {
		select {
		case r := <-results:
			if r.err != nil {
				return
			}
			// Deliveries arriving now are left unacked: the group gets them again.
			go func() {
				resp, err := stream.Recv()
				results <- result{resp, err}
			}()
		case <-timeout:
			return
		}
	}
}

// result is what one stream.Recv returned.
type result struct {
	resp *wahookv1.SubscribeResponse
	err  error
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
