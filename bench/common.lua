-- Shared by the bench/*.lua wrk scripts (each loads it with dofile): the bearer token and id
-- list from the environment bench/run.py sets, thread bookkeeping, and a done() hook that
-- prints one machine-readable line for run.py:
--   BENCH {"requests": ..., "errors_status": ..., "p50_us": ..., "p99_us": ..., ...}
--
-- Environment: BENCH_TOKEN (JWT), BENCH_IDS_FILE (one file id per line), BENCH_THREADS (-t).

bench = {}

-- A monotonic clock in microseconds (LuaJIT's ffi; wrk links LuaJIT). Used only to time the
-- active part of a run that ran out of prepared ids (see complete.lua).
local has_ffi, ffi = pcall(require, "ffi")
if has_ffi then
  pcall(ffi.cdef, [[
    typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
    int clock_gettime(int clk_id, bench_timespec *tp);
  ]])
  local ts = ffi.new("bench_timespec")
  function bench.now_us()
    ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC
    return tonumber(ts.tv_sec) * 1000000 + tonumber(ts.tv_nsec) / 1000
  end
else
  function bench.now_us()
    return os.time() * 1000000
  end
end

function bench.auth_headers(extra)
  local token = os.getenv("BENCH_TOKEN")
  if token == nil or token == "" then
    error("BENCH_TOKEN is not set (bench/run.py sets it)")
  end
  local headers = { ["Authorization"] = "Bearer " .. token }
  for name, value in pairs(extra or {}) do
    headers[name] = value
  end
  return headers
end

function bench.read_ids()
  local path = os.getenv("BENCH_IDS_FILE")
  if path == nil or path == "" then
    error("BENCH_IDS_FILE is not set (bench/run.py sets it)")
  end
  local ids = {}
  for line in io.lines(path) do
    if line ~= "" then
      ids[#ids + 1] = line
    end
  end
  if #ids == 0 then
    error("no ids in " .. path)
  end
  return ids
end

-- This thread's 1-based index and the thread count, to split a list of ids between threads.
function bench.thread_slot()
  return bench_index or 1, tonumber(os.getenv("BENCH_THREADS") or "1") or 1
end

-- Runs in wrk's main Lua state, before each thread's init().
local threads = {}
function setup(thread)
  threads[#threads + 1] = thread
  thread:set("bench_index", #threads)
end

function done(summary, latency, requests)
  local exhausted, active_us = 0, 0
  for _, thread in ipairs(threads) do
    if thread:get("bench_exhausted") == 1 then
      exhausted = 1
      local started, stopped = thread:get("bench_started_us"), thread:get("bench_exhausted_us")
      if started and stopped and stopped - started > active_us then
        active_us = stopped - started
      end
    end
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH {"requests": %d, "duration_us": %d, "bytes": %d, "errors_connect": %d, '
      .. '"errors_read": %d, "errors_write": %d, "errors_status": %d, "errors_timeout": %d, '
      .. '"p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d, "mean_us": %.1f, '
      .. '"exhausted": %d, "active_us": %d}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
    e.timeout, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean, exhausted, active_us
  ))
end
