-- A static form POST, the same as ../shared/peer-bench/post.lua, plus a JSON report.
-- Used for client credentials against both servers. env: WRK_BODY, WRK_AUTH, WRK_LIB.
dofile(os.getenv("WRK_LIB") .. "/wrk_report.lua")

wrk.method = "POST"
wrk.body = os.getenv("WRK_BODY")
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Authorization"] = "Basic " .. os.getenv("WRK_AUTH")

function done(summary, latency, requests)
  bench_report(summary, latency, { completed = summary.requests - summary.errors.status })
end
