-- POST /uploads: declare a file and get a presigned PUT. Every request creates a new pending
-- file (no Idempotency-Key), so each one is a ledger insert plus one signature.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "common.lua")

local size = tonumber(os.getenv("BENCH_FILE_SIZE") or "1024")

wrk.method = "POST"
wrk.path = "/uploads"
wrk.headers = bench.auth_headers({ ["Content-Type"] = "application/json" })
wrk.body = string.format(
  '{"filename": "report.txt", "content_type": "text/plain", "size": %d}', size
)
