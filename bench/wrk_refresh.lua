-- Refresh grants: each pre-minted refresh token (one per line in WRK_TOKENS) is sent
-- exactly once, because tokens rotate and a second use would revoke the family.
-- Run with one thread (-t1) so a single Lua state hands the tokens out.
-- env: WRK_TOKENS, WRK_AUTH, WRK_LIB.
dofile(os.getenv("WRK_LIB") .. "/wrk_report.lua")

local threads = {}

function setup(thread)
  threads[#threads + 1] = thread
end

function init(args)
  tokens = {}
  for line in io.lines(os.getenv("WRK_TOKENS")) do
    tokens[#tokens + 1] = line
  end
  sent, exhausted = 0, 0
  headers = {
    ["Content-Type"] = "application/x-www-form-urlencoded",
    ["Authorization"] = "Basic " .. os.getenv("WRK_AUTH"),
  }
end

function request()
  sent = sent + 1
  local token = tokens[sent]
  if token == nil then
    -- Out of tokens: stop rather than replay one. run.py sizes the pool so this
    -- does not happen and reports it if it does.
    exhausted = 1
    wrk.thread:stop()
    token = "exhausted"
  end
  return wrk.format("POST", "/token", headers, "grant_type=refresh_token&refresh_token=" .. token)
end

function done(summary, latency, requests)
  local exhausted_any, sent_total = 0, 0
  for _, thread in ipairs(threads) do
    exhausted_any = math.max(exhausted_any, thread:get("exhausted"))
    sent_total = sent_total + thread:get("sent")
  end
  bench_report(summary, latency, {
    completed = summary.requests - summary.errors.status,
    exhausted = exhausted_any,
    tokens_sent = sent_total,
  })
end
