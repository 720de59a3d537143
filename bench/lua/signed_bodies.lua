-- wrk script: POST /webhook cycling through pre-signed bodies, one per request.
-- Usage: wrk -tT -c50 -d10s -s signed_bodies.lua http://127.0.0.1:PORT -- BODIES_FILE T C
-- BODIES_FILE holds one "<X-Hub-Signature-256 value>\t<body>" per line (bench/benchlib/payloads.py).
-- Each wrk thread takes every Nth line so threads never send the same body; requests are formatted
-- once in init() so the Lua side costs nothing per request. done() prints one JSON line, prefixed
-- "WRK_JSON ", that bench/benchlib/tools.py parses.
--
-- A fast machine may need more requests than the file has bodies. A repeated body would be a
-- dedupe hit for wahook, cheaper than a new one, so the thread stops instead, while its C
-- connections (one more request each at most, in the same event-loop pass) still have distinct
-- bodies left, and prints "WRK_BODIES_USED": tools.run_wrk then ends the run (SIGINT, which wrk
-- answers with its summary over the time it ran) and the result says bodies_ran_out.

local threads = {}
local thread_count = 0

function setup(thread)
  thread:set("tid", thread_count)
  thread_count = thread_count + 1
  table.insert(threads, thread)
end

function init(args)
  local path = args[1]
  local stride = tonumber(args[2]) or 1
  local connections = tonumber(args[3]) or 1
  reqs = {}
  idx = 0
  n = 0
  wrapped = 0
  ran_out = 0
  local k = 0
  local headers = {}
  for line in io.lines(path) do
    if k % stride == tid then
      local tab = line:find("\t", 1, true)
      headers["Content-Type"] = "application/json"
      headers["X-Hub-Signature-256"] = line:sub(1, tab - 1)
      n = n + 1
      reqs[n] = wrk.format("POST", "/webhook", headers, line:sub(tab + 1))
    end
    k = k + 1
  end
  stop_at = math.max(1, n - connections + 1)
end

function request()
  idx = idx + 1
  if idx == stop_at and ran_out == 0 then
    ran_out = 1
    wrk.thread:stop()
    io.write("WRK_BODIES_USED\n")
    io.stdout:flush()
  end
  if idx > n then
    -- Fewer bodies than connections: later ones are duplicates (wahook dedupes them).
    idx = 1
    wrapped = wrapped + 1
  end
  return reqs[idx]
end

function done(summary, latency, requests)
  local wraps = 0
  local out = 0
  for _, t in ipairs(threads) do
    wraps = wraps + (t:get("wrapped") or 0)
    out = out + (t:get("ran_out") or 0)
  end
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"errors_connect":%d,"errors_read":%d,' ..
    '"errors_write":%d,"errors_status":%d,"errors_timeout":%d,"latency_p50_us":%d,' ..
    '"latency_p99_us":%d,"latency_max_us":%d,"wrapped":%d,"threads_ran_out":%d}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
    e.timeout, latency:percentile(50), latency:percentile(99), latency.max, wraps, out))
end
