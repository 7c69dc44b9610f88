-- Shared by the bench/*.lua wrk scripts: one machine-readable line for bench/run.py.
-- Loaded with dofile(os.getenv("WRK_LIB") .. "/wrk_report.lua").
local ffi = require("ffi")
ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clk_id, bench_timespec *tp);
]]
local clock = ffi.new("bench_timespec")
local CLOCK_MONOTONIC = 1

-- Wall-clock microseconds (wrk's Lua has no clock of its own).
function bench_now_us()
  ffi.C.clock_gettime(CLOCK_MONOTONIC, clock)
  return tonumber(clock.tv_sec) * 1e6 + tonumber(clock.tv_nsec) / 1e3
end

-- `fields`: numbers only. wrk's summary and latency histogram are always included.
function bench_report(summary, latency, fields)
  local out = {
    duration_us = summary.duration,
    requests = summary.requests,
    errors_status = summary.errors.status,
    errors_connect = summary.errors.connect,
    errors_read = summary.errors.read,
    errors_write = summary.errors.write,
    errors_timeout = summary.errors.timeout,
    p50_us = latency:percentile(50),
    p99_us = latency:percentile(99),
  }
  for name, value in pairs(fields or {}) do out[name] = value end
  local parts = {}
  for name, value in pairs(out) do
    parts[#parts + 1] = string.format('"%s":%.17g', name, value)
  end
  io.write("BENCH_JSON {" .. table.concat(parts, ",") .. "}\n")
end
