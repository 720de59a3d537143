package subscriber

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	wahookv1 "github.com/wahook/wahook/clients/go/wahookv1"
)

// fakeService plays the server side of Subscribe from a script, one function
// per stream, and records what the subscriber sent.
type fakeService struct {
	wahookv1.UnimplementedEventServiceServer
	mu      sync.Mutex
	streams []func(wahookv1.EventService_SubscribeServer) error
	opened  int
	acks    []uint64
	nacks   []uint64
	groups  []string
	// By ack id: acks, nacks ("id: error") and deadline changes ("id: 1s").
	ackIDs   []string
	nackIDs  []string
	modified []string
	options  []*wahookv1.SubscribeOptions
}

func (f *fakeService) Subscribe(s wahookv1.EventService_SubscribeServer) error {
	first, err := s.Recv()
	if err != nil {
		return err
	}
	f.mu.Lock()
	f.groups = append(f.groups, first.GetOptions().GetConsumerGroup())
	f.options = append(f.options, first.GetOptions())
	script := f.streams[min(f.opened, len(f.streams)-1)]
	f.opened++
	f.mu.Unlock()
	return script(s)
}

// record reads one request of acks and nacks.
func (f *fakeService) record(s wahookv1.EventService_SubscribeServer) error {
	req, err := s.Recv()
	if err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.acks = append(f.acks, req.GetAckSequences()...)
	f.ackIDs = append(f.ackIDs, req.GetAckIds()...)
	for _, n := range req.GetNacks() {
		if n.GetAckId() != "" {
			f.nackIDs = append(f.nackIDs, n.GetAckId()+" after "+n.GetDelay().AsDuration().String()+": "+n.GetError())
		} else {
			f.nacks = append(f.nacks, n.GetSequence())
		}
	}
	for _, m := range req.GetModifyDeadlines() {
		f.modified = append(f.modified, m.GetAckId()+": "+m.GetDeadline().AsDuration().String())
	}
	return nil
}

// leased is a response whose deliveries carry ack ids ("a<seq>"), as a
// server with leases sends them.
func leased(seqs ...uint64) *wahookv1.SubscribeResponse {
	resp := deliveries(seqs...)
	for _, d := range resp.Deliveries {
		d.AckId = fmt.Sprintf("a%d", d.GetEvent().GetSequence())
	}
	return resp
}

func deliveries(seqs ...uint64) *wahookv1.SubscribeResponse {
	resp := &wahookv1.SubscribeResponse{}
	for _, s := range seqs {
		resp.Deliveries = append(resp.Deliveries, &wahookv1.Delivery{
			Event:   &wahookv1.Event{Id: "evt_test", Sequence: s},
			Attempt: 1,
		})
	}
	return resp
}

func serve(t *testing.T, f *fakeService) wahookv1.EventServiceClient {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	wahookv1.RegisterEventServiceServer(srv, f)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return wahookv1.NewEventServiceClient(conn)
}

func TestAcksNacksReconnectsAndDrainsOnStop(t *testing.T) {
	f := &fakeService{}
	f.streams = []func(wahookv1.EventService_SubscribeServer) error{
		// First stream: two events, one ack request back, then the server drops it.
		func(s wahookv1.EventService_SubscribeServer) error {
			if err := s.Send(deliveries(1, 2)); err != nil {
				return err
			}
			if err := f.record(s); err != nil {
				return err
			}
			return status.Error(codes.Unavailable, "restarting")
		},
		// Second stream: one more event; after its ack the subscriber half-closes.
		func(s wahookv1.EventService_SubscribeServer) error {
			if err := s.Send(deliveries(3)); err != nil {
				return err
			}
			if err := f.record(s); err != nil {
				return err
			}
			if _, err := s.Recv(); !errors.Is(err, io.EOF) {
				t.Errorf("want the subscriber to half-close, got %v", err)
			}
			return nil
		},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var handled []uint64
	s := &Subscriber{
		Client:     serve(t, f),
		Options:    &wahookv1.SubscribeOptions{ConsumerGroup: "g1"},
		MinBackoff: 10 * time.Millisecond,
	}
	err := s.Run(ctx, func(_ context.Context, d *wahookv1.Delivery) error {
		seq := d.GetEvent().GetSequence()
		handled = append(handled, seq)
		switch seq {
		case 2:
			return errors.New("not now") // nacked
		case 3:
			cancel() // stop: Run acks 3, half-closes and returns
		}
		return nil
	})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if !slices.Equal(handled, []uint64{1, 2, 3}) {
		t.Errorf("handled %v", handled)
	}
	if !slices.Equal(f.acks, []uint64{1, 3}) || !slices.Equal(f.nacks, []uint64{2}) {
		t.Errorf("acks %v nacks %v", f.acks, f.nacks)
	}
	if f.opened != 2 || !slices.Equal(f.groups, []string{"g1", "g1"}) {
		t.Errorf("streams %d for groups %v", f.opened, f.groups)
	}
}

func TestPermanentRefusalIsReturnedNotRetried(t *testing.T) {
	f := &fakeService{}
	f.streams = []func(wahookv1.EventService_SubscribeServer) error{
		func(wahookv1.EventService_SubscribeServer) error {
			return status.Error(codes.InvalidArgument, "consumer_group: bad name")
		},
	}
	s := &Subscriber{Client: serve(t, f), Options: &wahookv1.SubscribeOptions{ConsumerGroup: "g"}}
	err := s.Run(context.Background(), func(context.Context, *wahookv1.Delivery) error { return nil })
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("want InvalidArgument, got %v", err)
	}
	if f.opened != 1 {
		t.Errorf("retried: %d streams", f.opened)
	}
}

func TestGroupIsRequired(t *testing.T) {
	s := &Subscriber{Options: &wahookv1.SubscribeOptions{}}
	if err := s.Run(context.Background(), nil); err == nil {
		t.Fatal("want an error for an empty consumer group")
	}
}

func TestAcksAndNacksByAckIDAndCountsConfirmations(t *testing.T) {
	f := &fakeService{}
	f.streams = []func(wahookv1.EventService_SubscribeServer) error{
		func(s wahookv1.EventService_SubscribeServer) error {
			if err := s.Send(leased(1, 2, 3)); err != nil {
				return err
			}
			if err := f.record(s); err != nil {
				return err
			}
			// a1 took effect, a2 was nacked, a3's lease had ended (say, its
			// deadline passed): it comes again.
			if err := s.Send(&wahookv1.SubscribeResponse{Confirmation: &wahookv1.LeaseConfirmation{
				AckedIds: []string{"a1"}, NackedIds: []string{"a2"}, ExpiredIds: []string{"a3"},
			}}); err != nil {
				return err
			}
			if _, err := s.Recv(); !errors.Is(err, io.EOF) {
				t.Errorf("want the subscriber to half-close, got %v", err)
			}
			return nil
		},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var logged []string
	s := &Subscriber{
		Client:  serve(t, f),
		Options: &wahookv1.SubscribeOptions{ConsumerGroup: "g1"},
		Logf:    func(format string, args ...any) { logged = append(logged, fmt.Sprintf(format, args...)) },
	}
	err := s.Run(ctx, func(_ context.Context, d *wahookv1.Delivery) error {
		switch d.GetEvent().GetSequence() {
		case 2:
			return errors.New("crm said 503 " + strings.Repeat("é", 2000))
		case 3:
			cancel() // stop: Run acks the batch, waits for its confirmation, returns
		}
		return nil
	})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if !slices.Equal(f.ackIDs, []string{"a1", "a3"}) || len(f.acks) != 0 {
		t.Errorf("acks by id %v, by sequence %v", f.ackIDs, f.acks)
	}
	wantNack := "a2 after 1s: crm said 503 " + strings.Repeat("é", 1024-len("crm said 503 "))
	if len(f.nackIDs) != 1 || f.nackIDs[0] != wantNack || len(f.nacks) != 0 {
		t.Errorf("nacks by id %.40q... (%d), by sequence %v", f.nackIDs, len(f.nackIDs), f.nacks)
	}
	if got := s.Stats(); got != (Stats{Acked: 1, Nacked: 1, Expired: 1}) {
		t.Errorf("stats %+v", got)
	}
	if len(logged) != 1 || !strings.Contains(logged[0], "1 acks or nacks came after their lease ended") {
		t.Errorf("logged %q", logged)
	}
	if got := f.options[0].GetMaxReceiveBytes(); got != MaxReceiveBytes {
		t.Errorf("max_receive_bytes %d, want %d", got, MaxReceiveBytes)
	}
}

func TestExtendsTheLeaseWhileTheHandlerRuns(t *testing.T) {
	f := &fakeService{}
	extended := make(chan struct{})
	f.streams = []func(wahookv1.EventService_SubscribeServer) error{
		func(s wahookv1.EventService_SubscribeServer) error {
			if err := s.Send(leased(7)); err != nil {
				return err
			}
			// The handler is still running: the first request must extend a7.
			if err := f.record(s); err != nil {
				return err
			}
			close(extended)
			if err := f.record(s); err != nil { // then its ack
				return err
			}
			_, _ = s.Recv() // the half-close
			return nil
		},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s := &Subscriber{
		Client:       serve(t, f),
		Options:      &wahookv1.SubscribeOptions{ConsumerGroup: "g1", AckDeadline: durationpb.New(time.Second)},
		DrainTimeout: 100 * time.Millisecond, // the fake confirms nothing
	}
	err := s.Run(ctx, func(hctx context.Context, _ *wahookv1.Delivery) error {
		// A handler slower than the 1 s deadline: it returns once the
		// server has seen the lease extended.
		select {
		case <-extended:
		case <-hctx.Done():
			return hctx.Err()
		}
		cancel()
		return nil
	})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.modified) == 0 || f.modified[0] != "a7: 1s" {
		t.Errorf("deadline changes %v", f.modified)
	}
	if !slices.Equal(f.ackIDs, []string{"a7"}) {
		t.Errorf("acks by id %v", f.ackIDs)
	}
}

func TestNackDelayDoublesPerAttemptUpToAMinute(t *testing.T) {
	var got []time.Duration
	for _, a := range []uint32{0, 1, 2, 3, 6, 7, 8, 1000} {
		got = append(got, NackDelay(a))
	}
	want := []time.Duration{time.Second, time.Second, 2 * time.Second, 4 * time.Second,
		32 * time.Second, time.Minute, time.Minute, time.Minute}
	if !slices.Equal(got, want) {
		t.Errorf("delays %v, want %v", got, want)
	}
}

func TestLeasesStopExtendingAfterMaxExtension(t *testing.T) {
	now := time.Now()
	var c counters
	l := newLeases(10*time.Second, time.Minute, &c)
	l.received(leased(1, 2).GetDeliveries(), now)
	if req := l.extensions(now.Add(4 * time.Second)); req != nil {
		t.Errorf("extended with 6 s of 10 left: %v", req)
	}
	req := l.extensions(now.Add(6 * time.Second))
	if len(req.GetModifyDeadlines()) != 2 {
		t.Fatalf("want both extended with 4 s of 10 left, got %v", req)
	}
	// Extended to 16 s; held past the minute, neither is extended again.
	if req := l.extensions(now.Add(61 * time.Second)); req != nil {
		t.Errorf("extended past MaxExtension: %v", req)
	}
}
