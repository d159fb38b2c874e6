-- POST /uploads/{id}/complete: each request is the FIRST completion of a pending file whose
-- bytes are already stored (prepared by bench/run.py), i.e. ledger read, S3 HEAD, ranged GET,
-- magic-byte check and the ledger transition to available. Ids are never reused: a second
-- completion answers 200 from the ledger alone and would flatter the numbers. When this
-- thread's ids run out it stops, and done() reports "exhausted" with the active time, so
-- run.py computes req/s over the time that really had load.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "common.lua")

local prepared = {}
local position = 0
bench_exhausted = 0

function init(args)
  local headers = bench.auth_headers()
  local ids = bench.read_ids()
  local index, count = bench.thread_slot()
  for i = index, #ids, count do
    prepared[#prepared + 1] = wrk.format("POST", "/uploads/" .. ids[i] .. "/complete", headers, "")
  end
end

function request()
  if position == 0 then
    bench_started_us = bench.now_us()
  end
  if position >= #prepared then
    if bench_exhausted == 0 then
      bench_exhausted = 1
      bench_exhausted_us = bench.now_us()
      wrk.thread:stop()
    end
    return prepared[#prepared]
  end
  position = position + 1
  return prepared[position]
end
