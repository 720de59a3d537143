// Command wahook-subscribe is the example a Go service copies: it joins a
// wahook consumer group, switches on each event's typed payload, prints one
// JSON line per event, and acks it after handling (by the delivery's ack id;
// the subscriber package extends the lease of a handler that runs long).
//
//	wahook-subscribe --target 127.0.0.1:50051 --group billing --event-types message,status
//
// Exit codes: 0 done, 1 refused by the server, 3 never reached the server, 4
// fewer events than --count (clients/README.md).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/wahook/wahook/clients/go/subscriber"
	wahookv1 "github.com/wahook/wahook/clients/go/wahookv1"
)

// line is the one-line summary printed per event. The four example clients
// print the same fields, so one test reads them all (clients/README.md).
type line struct {
	ID           string   `json:"id"`
	Sequence     uint64   `json:"sequence"`
	Attempt      uint32   `json:"attempt"`
	Type         string   `json:"type"`
	MessageType  string   `json:"message_type,omitempty"`
	MessageID    string   `json:"message_id,omitempty"`
	From         string   `json:"from,omitempty"`
	Text         string   `json:"text,omitempty"`
	ReplyID      string   `json:"reply_id,omitempty"`
	ReplyTitle   string   `json:"reply_title,omitempty"`
	MediaID      string   `json:"media_id,omitempty"`
	MimeType     string   `json:"mime_type,omitempty"`
	Caption      string   `json:"caption,omitempty"`
	Latitude     *float64 `json:"latitude,omitempty"`
	Longitude    *float64 `json:"longitude,omitempty"`
	LocationName string   `json:"location_name,omitempty"`
	Emoji        string   `json:"emoji,omitempty"`
	ReactedTo    string   `json:"reacted_to,omitempty"`
	Status       string   `json:"status,omitempty"`
	RecipientID  string   `json:"recipient_id,omitempty"`
}

func main() {
	target := flag.String("target", env("WAHOOK_GRPC_TARGET", "127.0.0.1:50051"), "wahook gRPC address (env WAHOOK_GRPC_TARGET)")
	group := flag.String("group", env("WAHOOK_GROUP", "go-example"), "consumer group (env WAHOOK_GROUP)")
	token := flag.String("token", env("WAHOOK_GRPC_TOKEN", ""), "the sidecar's bearer token, when it asks for one (env WAHOOK_GRPC_TOKEN)")
	eventTypes := flag.String("event-types", "", "comma-separated event types to receive, e.g. message,status (default all)")
	messageTypes := flag.String("message-types", "", "comma-separated Meta message types, e.g. text,interactive (default all)")
	from := flag.String("from", "earliest", "where a new group starts: earliest or latest")
	count := flag.Int("count", 0, "exit after handling this many events (0: run until a signal)")
	idleExit := flag.Float64("idle-exit", 0, "exit after this many seconds without an event (0: never)")
	maxAttempts := flag.Uint("max-delivery-attempts", 0, "a new group's deliveries of an event before it goes to the group's dead letters (0: the server's default, 10)")
	failTypes := flag.String("fail-message-types", "", "comma-separated message types whose handling fails (nacked with the error): a stand-in for a poison event, to see retries end in the dead letters")
	flag.Parse()

	opts := &wahookv1.SubscribeOptions{ConsumerGroup: *group, ConsumerName: "go-example", MaxDeliveryAttempts: uint32(*maxAttempts)}
	switch *from {
	case "earliest":
		opts.Start = &wahookv1.StartPosition{Position: &wahookv1.StartPosition_Earliest{Earliest: true}}
	case "latest":
		opts.Start = &wahookv1.StartPosition{Position: &wahookv1.StartPosition_Latest{Latest: true}}
	default:
		log.Fatalf("--from must be earliest or latest, not %q", *from)
	}
	filter := &wahookv1.EventFilter{MessageTypes: split(*messageTypes)}
	for _, t := range split(*eventTypes) {
		v, ok := wahookv1.EventType_value["EVENT_TYPE_"+strings.ToUpper(t)]
		if !ok {
			log.Fatalf("unknown event type %q", t)
		}
		filter.EventTypes = append(filter.EventTypes, wahookv1.EventType(v))
	}
	opts.Filter = filter

	// Plaintext: the sidecar's gRPC port listens on loopback next to the
	// service. Use credentials.NewTLS when it is reached over a network.
	dialOpts := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	if *token != "" {
		dialOpts = append(dialOpts, grpc.WithPerRPCCredentials(bearer(*token)))
	}
	conn, err := grpc.NewClient(*target, dialOpts...)
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	var mu sync.Mutex
	handled := 0
	idle := time.AfterFunc(forever(time.Duration(*idleExit*float64(time.Second))), cancel)
	defer idle.Stop()
	enc := json.NewEncoder(os.Stdout)

	var opened atomic.Bool
	s := &subscriber.Subscriber{
		Client:  wahookv1.NewEventServiceClient(conn),
		Options: opts,
		Logf:    log.Printf,
		OnOpen:  func() { opened.Store(true) },
	}
	refused := refuser(split(*failTypes))
	err = s.Run(ctx, func(_ context.Context, d *wahookv1.Delivery) error {
		if err := enc.Encode(summarize(d)); err != nil {
			return fmt.Errorf("print: %w", err) // nacked: delivered again
		}
		mu.Lock()
		defer mu.Unlock()
		idle.Reset(forever(time.Duration(*idleExit * float64(time.Second))))
		if err := refused(d); err != nil {
			return err
		}
		handled++
		if *count > 0 && handled >= *count {
			cancel() // Run sends this batch's acks, then returns
		}
		return nil
	})
	logStats(s.Stats())
	if err != nil && !errors.Is(err, context.Canceled) {
		log.Fatal(err)
	}
	if !opened.Load() {
		log.Printf("wahook: never connected to %s", *target)
		os.Exit(3)
	}
	if *count > 0 && handled < *count {
		log.Printf("wahook: %d of --count %d events", handled, *count)
		os.Exit(4)
	}
}

// refuser stands in for a handler that fails on some events (a poison
// event): their nack carries the error, and once the group's
// max_delivery_attempts are used up they wait in its dead letters.
func refuser(types []string) func(*wahookv1.Delivery) error {
	return func(d *wahookv1.Delivery) error {
		if t := d.GetEvent().GetMessage().GetTypeName(); t != "" && slices.Contains(types, t) {
			return fmt.Errorf("message type %s refused (--fail-message-types)", t)
		}
		return nil
	}
}

// logStats reports what the server confirmed. An expired ack means the event
// is delivered again: the handler must be idempotent.
func logStats(st subscriber.Stats) {
	log.Printf("wahook: confirmed %d acks, %d nacks, %d lease extensions; %d expired",
		st.Acked, st.Nacked, st.Extended, st.Expired)
}

// summarize switches on the typed payload: this is where a service would
// route each kind of event to its own code.
func summarize(d *wahookv1.Delivery) line {
	ev := d.GetEvent()
	out := line{
		ID:       ev.GetId(),
		Sequence: ev.GetSequence(),
		Attempt:  d.GetAttempt(),
		Type:     strings.ToLower(strings.TrimPrefix(ev.GetType().String(), "EVENT_TYPE_")),
	}
	switch p := ev.GetPayload().(type) {
	case *wahookv1.Event_Message:
		m := p.Message
		out.MessageType, out.MessageID, out.From = m.GetTypeName(), m.GetId(), m.GetFrom()
		switch c := m.GetContent().(type) {
		case *wahookv1.Message_Text:
			out.Text = c.Text.GetBody()
		case *wahookv1.Message_Interactive:
			switch r := c.Interactive.GetReply().(type) {
			case *wahookv1.InteractiveReply_ButtonReply:
				out.ReplyID, out.ReplyTitle = r.ButtonReply.GetId(), r.ButtonReply.GetTitle()
			case *wahookv1.InteractiveReply_ListReply:
				out.ReplyID, out.ReplyTitle = r.ListReply.GetId(), r.ListReply.GetTitle()
			case *wahookv1.InteractiveReply_FlowReply:
				out.ReplyTitle = r.FlowReply.GetName()
			}
		case *wahookv1.Message_Button:
			out.ReplyID, out.ReplyTitle = c.Button.GetPayload(), c.Button.GetText()
		case *wahookv1.Message_Image:
			media(&out, c.Image)
		case *wahookv1.Message_Audio:
			media(&out, c.Audio)
		case *wahookv1.Message_Video:
			media(&out, c.Video)
		case *wahookv1.Message_Document:
			media(&out, c.Document)
		case *wahookv1.Message_Sticker:
			media(&out, c.Sticker)
		case *wahookv1.Message_Location:
			lat, lon := c.Location.GetLatitude(), c.Location.GetLongitude()
			out.Latitude, out.Longitude, out.LocationName = &lat, &lon, c.Location.GetName()
		case *wahookv1.Message_Reaction:
			out.Emoji, out.ReactedTo = c.Reaction.GetEmoji(), c.Reaction.GetMessageId()
		}
	case *wahookv1.Event_Status:
		st := p.Status
		out.MessageID, out.RecipientID = st.GetId(), st.GetRecipientId()
		out.Status = strings.ToLower(strings.TrimPrefix(st.GetState().String(), "DELIVERY_STATE_"))
	}
	return out
}

func media(out *line, m *wahookv1.Media) {
	out.MediaID, out.MimeType, out.Caption = m.GetId(), m.GetMimeType(), m.GetCaption()
}

func split(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// bearer sends "authorization: Bearer <token>" with every call. The sidecar is
// on loopback in plaintext, so the token may travel without TLS.
type bearer string

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}

func (bearer) RequireTransportSecurity() bool { return false }

func env(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// forever turns "0: never" into a timer duration that does not fire.
func forever(d time.Duration) time.Duration {
	if d <= 0 {
		return 100 * 365 * 24 * time.Hour
	}
	return d
}
