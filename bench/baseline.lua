-- The baseline row: GET /baseline on bench/baseline_app.py (a bare async FastAPI endpoint).
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "common.lua")

wrk.method = "GET"
wrk.path = "/baseline"
