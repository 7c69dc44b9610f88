-- CIBA polls that stay pending (CIBA Core §11 authorization_pending): POST /token, rotating
-- over pending auth_req_ids. env: WRK_AUTH (base64 id:secret), WRK_IDS (comma-separated).
-- Prints one JSON line: requests, how many answered authorization_pending, latencies.
local ids = {}
for id in string.gmatch(os.getenv("WRK_IDS") or "", "[^,]+") do ids[#ids + 1] = id end
local threads = {}
local next_id = 0
pending = 0
other = 0

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Authorization"] = "Basic " .. (os.getenv("WRK_AUTH") or "")

function setup(thread)
  threads[#threads + 1] = thread
end

function request()
  next_id = next_id % #ids + 1
  return wrk.format(nil, nil, nil,
    "grant_type=urn%3Aopenid%3Aparams%3Agrant-type%3Aciba&auth_req_id=" .. ids[next_id])
end

function response(status, headers, body)
  if status == 400 and string.find(body, "authorization_pending", 1, true) then
    pending = pending + 1
  else
    other = other + 1
  end
end

function done(summary, latency, requests)
  local total_pending, total_other = 0, 0
  for _, thread in ipairs(threads) do
    total_pending = total_pending + thread:get("pending")
    total_other = total_other + thread:get("other")
  end
  local errors = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "pending": %d, "other": %d, "socket_errors": %d, ' ..
    '"latency_p50_us": %d, "latency_p99_us": %d}\n',
    summary.requests, summary.duration, total_pending, total_other,
    errors.connect + errors.read + errors.write + errors.timeout,
    latency:percentile(50), latency:percentile(99)))
end
