-- Complete authorization-code flows with a signed-in browser whose consent is remembered:
-- GET /authorize (session cookie) -> 302 with a code -> POST /token (PKCE S256 verifier,
-- client_secret_basic) -> 200. Run with one connection per thread (-tN -cN): each Lua
-- state then drives one connection, strictly one request after the other, so a flow's
-- two requests and their timing belong together.
-- env: WRK_AUTHORIZE_PATH, WRK_COOKIE, WRK_TOKEN_BODY (without the code), WRK_AUTH, WRK_LIB.
dofile(os.getenv("WRK_LIB") .. "/wrk_report.lua")

local threads = {}

function setup(thread)
  threads[#threads + 1] = thread
end

function init(args)
  authorize = wrk.format("GET", os.getenv("WRK_AUTHORIZE_PATH"), { Cookie = os.getenv("WRK_COOKIE") })
  token_body = os.getenv("WRK_TOKEN_BODY") .. "&code="
  token_headers = {
    ["Content-Type"] = "application/x-www-form-urlencoded",
    ["Authorization"] = "Basic " .. os.getenv("WRK_AUTH"),
  }
  flows, errors, latencies = 0, 0, {}
  code, started = nil, 0
end

function request()
  if code == nil then
    started = bench_now_us()
    return authorize
  end
  return wrk.format("POST", "/token", token_headers, token_body .. code)
end

function response(status, headers, body)
  if code == nil then
    local location = headers["Location"] or headers["location"] or ""
    code = status == 302 and location:match("[?&]code=([^&]+)") or nil
    if code == nil then
      errors = errors + 1
    end
    return
  end
  code = nil
  if status == 200 and body:find('"id_token"', 1, true) then
    flows = flows + 1
    latencies[#latencies + 1] = bench_now_us() - started
  else
    errors = errors + 1
  end
end

local function percentile(sorted, p)
  if #sorted == 0 then
    return 0
  end
  local rank = math.max(1, math.ceil(p / 100 * #sorted))
  return sorted[rank]
end

function done(summary, latency, requests)
  local all, flow_errors, total = {}, 0, 0
  for _, thread in ipairs(threads) do
    total = total + thread:get("flows")
    flow_errors = flow_errors + thread:get("errors")
    for _, value in ipairs(thread:get("latencies")) do
      all[#all + 1] = value
    end
  end
  table.sort(all)
  bench_report(summary, latency, {
    completed = total,
    flow_errors = flow_errors,
    flow_p50_us = percentile(all, 50),
    flow_p99_us = percentile(all, 99),
  })
end
