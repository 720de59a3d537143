// Command floor is the do-nothing baseline of the open-loop suite: a Go net/http server whose
// POST /webhook reads the body and answers 200, nothing else (GET /webhook answers 200 too, so
// the bench's readiness check works).
//
// It is the floor of this machine plus the load tool: measured with the same Go load generator,
// at the same rate, pinned to the same core, no Python receiver can be expected to answer faster
// than a compiled server that does no work. The issue-5 latency rows name its figures next to
// wahook's so a verdict is read against what the VM itself allows.
//
// Standard library only; built by bench/benchlib/tools.py like bench/loadgen.
// Run: floor --port 8080 (binds 127.0.0.1; --secret is accepted and ignored, like every baseline).
package main

import (
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"
)

func webhook(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodPost:
		// Read the whole body, as every receiver must before it can answer.
		if _, err := io.Copy(io.Discard, r.Body); err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		w.WriteHeader(http.StatusOK)
	case http.MethodGet:
		w.WriteHeader(http.StatusOK)
	default:
		w.WriteHeader(http.StatusMethodNotAllowed)
	}
}

func main() {
	port := flag.Int("port", 0, "TCP port on 127.0.0.1")
	flag.String("secret", "", "ignored; accepted so all servers share flags")
	flag.Parse()
	if *port <= 0 {
		fmt.Fprintln(os.Stderr, "floor: --port is required")
		os.Exit(2)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/webhook", webhook)
	srv := &http.Server{
		Addr:              fmt.Sprintf("127.0.0.1:%d", *port),
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
	}
	if err := srv.ListenAndServe(); err != nil {
		fmt.Fprintln(os.Stderr, "floor:", err)
		os.Exit(1)
	}
}
