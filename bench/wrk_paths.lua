-- wrk script: each request takes the next path from PATHS_FILE (distinct recipients),
-- threads interleave so no path is used twice; prints p50/p95/p99 and requests/s.
local paths = {}
local counter = 0
local thread_id = 0
local threads = {}

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

function init(args)
  for line in io.lines(os.getenv("PATHS_FILE")) do
    paths[#paths + 1] = line
  end
  thread_id = id
  counter = 0
end

function request()
  local index = (counter * tonumber(os.getenv("WRK_THREADS"))) + thread_id + 1
  counter = counter + 1
  local path = paths[((index - 1) % #paths) + 1]
  if os.getenv("METHOD") == "GET" then
    return wrk.format("GET", path)
  end
  return wrk.format("POST", path, {["Content-Type"] = "application/x-www-form-urlencoded"},
                    "List-Unsubscribe=One-Click")
end

function done(summary, latency, requests)
  io.write(string.format("RESULT requests=%d duration_s=%.3f rps=%.1f p50_ms=%.2f p95_ms=%.2f p99_ms=%.2f errors=%d non2xx=%d\n",
    summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(95) / 1000, latency:percentile(99) / 1000,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.errors.status))
end
