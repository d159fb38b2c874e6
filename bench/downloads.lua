-- GET /downloads/{id}: cycle through the ids of available files prepared by bench/run.py.
-- Each request is a ledger read plus one presigned GET (no call to S3).
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "common.lua")

local prepared = {}
local position = 0

function init(args)
  local headers = bench.auth_headers()
  for _, id in ipairs(bench.read_ids()) do
    prepared[#prepared + 1] = wrk.format("GET", "/downloads/" .. id, headers)
  end
  -- Threads start at different places in the list.
  local index, count = bench.thread_slot()
  position = math.floor((index - 1) * #prepared / count)
end

function request()
  position = position % #prepared + 1
  return prepared[position]
end
