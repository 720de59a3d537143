package subscriber

import (
	"context"
	"errors"
	"io"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

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
}

func (f *fakeService) Subscribe(s wahookv1.EventService_SubscribeServer) error {
	first, err := s.Recv()
	if err != nil {
		return err
	}
	f.mu.Lock()
	f.groups = append(f.groups, first.GetOptions().GetConsumerGroup())
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
	for _, n := range req.GetNacks() {
		f.nacks = append(f.nacks, n.GetSequence())
	}
	return nil
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
