-- The baseline row: GET /healthz on the same server (s3gate's own middleware, observer and JSON
-- access line; no auth, no ledger, no signing), or on the peer.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "common.lua")

wrk.method = "GET"
wrk.path = "/healthz"
