// Command loadgen posts pre-signed webhook bodies open-loop at a fixed rate and reports latency
// measured from each request's INTENDED send time, so queueing in the server is not hidden the way a
// closed-loop tool (wrk) hides it: when the server stalls, requests keep being sent on schedule and
// their waiting counts.
//
// Input: one "<X-Hub-Signature-256 value>\t<body>" per line (bench/benchlib/payloads.py). When the run
// needs more requests than the file has bodies, later passes replace the run id (-run) inside each
// body with a fresh one and re-sign it with -secret, so every request stays distinct.
//
// Output: one JSON object on stdout. Besides the latency percentiles it says how late the tool
// itself was: max_send_late_us (the schedule loop's worst overshoot, every request) and
// send_late_us (p50/p99/p99.9/max over the measured requests of intended send -> the request
// written to its connection), the share of each latency the load tool, not the server, put there.
package main

import (
	"bufio"
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

type body struct {
	sig  string
	data []byte
}

type result struct {
	intended time.Time
	latency  time.Duration
	sendLate time.Duration // intended -> written to the connection (or handed to client.Do)
	status   int
	err      bool
}

type report struct {
	URL           string             `json:"url"`
	Rate          float64            `json:"rate"`
	DurationS     float64            `json:"duration_s"`
	WarmupS       float64            `json:"warmup_s"`
	Sent          int                `json:"sent"`
	Measured      int                `json:"measured"`
	OK            int                `json:"ok"`
	Errors        int                `json:"errors"`
	Unfinished    int                `json:"unfinished"`
	Status        map[string]int     `json:"status"`
	AchievedRate  float64            `json:"achieved_rate"`
	MaxSendLateUs int64              `json:"max_send_late_us"`
	Wraps         int                `json:"wraps"`
	LatencyUs     map[string]float64 `json:"latency_us"`
	SendLateUs    map[string]float64 `json:"send_late_us"`
}

func loadBodies(path string) ([]body, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []body
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 8<<20)
	for sc.Scan() {
		line := sc.Bytes()
		tab := bytes.IndexByte(line, '\t')
		if tab < 0 {
			return nil, fmt.Errorf("line %d: no tab", len(out)+1)
		}
		data := make([]byte, len(line)-tab-1)
		copy(data, line[tab+1:])
		out = append(out, body{sig: string(line[:tab]), data: data})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no bodies", path)
	}
	return out, sc.Err()
}

// variant makes pass `wrap` of body b distinct from every earlier pass and signs it.
func variant(b body, wrap int, run, secret string) body {
	if wrap == 0 || run == "" || secret == "" {
		return b
	}
	fresh := fmt.Sprintf("%s%04x", run[:len(run)-4], wrap)
	data := bytes.ReplaceAll(b.data, []byte(run), []byte(fresh))
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(data)
	return body{sig: "sha256=" + hex.EncodeToString(mac.Sum(nil)), data: data}
}

func percentile(sorted []time.Duration, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(p / 100 * float64(len(sorted)))
	if i >= len(sorted) {
		i = len(sorted) - 1
	}
	return float64(sorted[i].Microseconds())
}

func main() {
	url := flag.String("url", "", "POST target, e.g. http://127.0.0.1:8080/webhook")
	path := flag.String("bodies", "", "file of signed bodies")
	rate := flag.Float64("rate", 1000, "requests per second")
	duration := flag.Duration("duration", 10*time.Second, "how long to send")
	warmup := flag.Duration("warmup", 0, "requests intended in this first part are not measured")
	timeout := flag.Duration("timeout", 10*time.Second, "per-request timeout")
	offset := flag.Int("offset", 0, "start at this body index")
	run := flag.String("run", "", "run id inside the bodies, replaced on later passes")
	secret := flag.String("secret", "", "app secret to re-sign rewritten bodies (default: $WAHOOK_BENCH_SECRET)")
	flag.Parse()
	if *secret == "" {
		// Preferred over the flag: the environment is not visible in the process list.
		*secret = os.Getenv("WAHOOK_BENCH_SECRET")
	}
	if *url == "" || *path == "" || *rate <= 0 {
		fmt.Fprintln(os.Stderr, "loadgen: -url, -bodies and a positive -rate are required")
		os.Exit(2)
	}
	bodies, err := loadBodies(*path)
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(2)
	}
	transport := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		MaxIdleConns:        4096,
		MaxIdleConnsPerHost: 4096,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	client := &http.Client{Transport: transport, Timeout: *timeout}

	total := int(*rate * duration.Seconds())
	results := make([]result, total)
	interval := time.Duration(float64(time.Second) / *rate)
	var wg sync.WaitGroup
	var maxLate time.Duration
	wraps := 0
	start := time.Now().Add(50 * time.Millisecond)
	for i := 0; i < total; i++ {
		intended := start.Add(time.Duration(i) * interval)
		if d := time.Until(intended); d > 0 {
			time.Sleep(d)
		}
		// How late this send leaves (sleep overshoot, a busy core): it is inside the
		// measured latency, so a large value says the load tool, not the server, was slow.
		if late := time.Since(intended); late > maxLate {
			maxLate = late
		}
		k := *offset + i
		wrap := k / len(bodies)
		if wrap > wraps {
			wraps = wrap
		}
		wg.Add(1)
		go func(i int, b body, wrap int, intended time.Time) {
			defer wg.Done()
			b = variant(b, wrap, *run, *secret)
			req, _ := http.NewRequest(http.MethodPost, *url, bytes.NewReader(b.data))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("X-Hub-Signature-256", b.sig)
			// The send leaves when the transport's write goroutine has written the request
			// (after the schedule loop, this goroutine's start, a connection from the pool or a
			// dial on core 0): everything before that is the load tool's, not the server's.
			var wrote atomic.Int64
			trace := &httptrace.ClientTrace{WroteRequest: func(httptrace.WroteRequestInfo) {
				wrote.Store(int64(time.Since(intended)))
			}}
			req = req.WithContext(httptrace.WithClientTrace(req.Context(), trace))
			handed := time.Since(intended)
			resp, err := client.Do(req)
			r := result{intended: intended}
			if err != nil {
				r.err = true
			} else {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				r.status = resp.StatusCode
			}
			r.latency = time.Since(intended)
			r.sendLate = time.Duration(wrote.Load())
			if r.sendLate == 0 {
				// No write reported (the request failed before it, or the answer came back
				// before the write goroutine got to its callback): the moment it was handed
				// to the client is the best lower bound left.
				r.sendLate = handed
			}
			if r.sendLate > r.latency {
				// The callback ran after the answer was read: the send was no later than that.
				r.sendLate = r.latency
			}
			results[i] = r
		}(i, bodies[k%len(bodies)], wrap, intended)
	}
	sendEnd := time.Now()
	wg.Wait()

	rep := report{
		URL: *url, Rate: *rate, DurationS: duration.Seconds(), WarmupS: warmup.Seconds(),
		Sent: total, Status: map[string]int{}, MaxSendLateUs: maxLate.Microseconds(), Wraps: wraps,
	}
	rep.AchievedRate = float64(total) / sendEnd.Sub(start).Seconds()
	measureFrom := start.Add(*warmup)
	var lats, lates []time.Duration
	for _, r := range results {
		if r.intended.IsZero() {
			rep.Unfinished++
			continue
		}
		if r.err {
			rep.Errors++
		} else {
			rep.Status[strconv.Itoa(r.status)]++
			if r.status == 200 {
				rep.OK++
			}
		}
		if r.intended.Before(measureFrom) {
			continue
		}
		// A failed request counts at its full latency: dropping it would flatter the tail.
		lats = append(lats, r.latency)
		lates = append(lates, r.sendLate)
	}
	rep.Measured = len(lats)
	sort.Slice(lats, func(a, b int) bool { return lats[a] < lats[b] })
	rep.LatencyUs = map[string]float64{
		"p50": percentile(lats, 50), "p90": percentile(lats, 90), "p99": percentile(lats, 99),
		"p99.9": percentile(lats, 99.9), "max": percentile(lats, 100),
	}
	sort.Slice(lates, func(a, b int) bool { return lates[a] < lates[b] })
	rep.SendLateUs = map[string]float64{
		"p50": percentile(lates, 50), "p99": percentile(lates, 99),
		"p99.9": percentile(lates, 99.9), "max": percentile(lates, 100),
	}
	enc := json.NewEncoder(os.Stdout)
	if err := enc.Encode(rep); err != nil {
		os.Exit(1)
	}
}
