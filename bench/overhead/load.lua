-- wrk script for the overhead benchmark (bench/overhead/wrk.py runs it).
--
--   wrk -s load.lua URL -- BODY_FILE TOKENS_FILE [RATE_PER_SECOND]
--
-- Every request is `POST <path>` with the JSON body from BODY_FILE and a bearer token taken
-- in turn from TOKENS_FILE (one per line, minted up front), so the sidecar verifies a
-- different token each time, as it would in service.
--
-- With RATE_PER_SECOND, an open-loop approximation of a constant arrival rate (wrk has no
-- rate option; wrk2 is not packaged by Debian): each wrk thread keeps a schedule of evenly
-- spaced send times (rate / threads apart), and wrk's delay() hook holds each free
-- connection until the next unclaimed slot. wrk times a request from when it is sent, so a
-- slot claimed late (every connection busy) would hide queueing: such slots are counted and
-- their lateness reported, to show whether the approximation held. delay() has 1 ms
-- resolution; the schedule itself does not drift.
--
-- done() prints one line, `WRKJSON {...}`: latency percentiles (µs), requests, duration,
-- errors, and the count of every HTTP status seen.

local ffi = require("ffi")
ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } lcr_timespec;
int clock_gettime(int clk_id, lcr_timespec *tp);
]]
local CLOCK_MONOTONIC = 1
local ts = ffi.new("lcr_timespec")
local function now_ms()
  ffi.C.clock_gettime(CLOCK_MONOTONIC, ts)
  return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
end

local threads = {}
local thread_count = 0

function setup(thread)
  thread_count = thread_count + 1
  thread:set("thread_index", thread_count)
  table.insert(threads, thread)
end

local function read_file(path)
  local f = assert(io.open(path, "rb"))
  local data = f:read("*a")
  f:close()
  return data
end

-- per-thread state (each wrk thread has its own Lua state)
local body, tokens, n_tokens, next_token
local interval_ms, next_slot
statuses = {}
late, late_ms_sum, late_ms_max, slots = 0, 0, 0, 0

function init(args)
  body = read_file(args[1])
  tokens = {}
  for line in read_file(args[2]):gmatch("[^\n]+") do
    table.insert(tokens, line)
  end
  n_tokens = #tokens
  next_token = ((thread_index or 1) * 7919) % n_tokens + 1 -- threads start at different tokens
  local rate = tonumber(args[3] or "")
  if rate and rate > 0 then
    -- this thread's share of the rate; thread_count is not visible here, so wrk.py passes
    -- the per-thread rate
    interval_ms = 1000 / rate
  end
end

function request()
  local token = tokens[next_token]
  next_token = next_token % n_tokens + 1
  return wrk.format("POST", nil, {
    ["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer " .. token,
  }, body)
end

function delay()
  if not interval_ms then
    return 0
  end
  local t = now_ms()
  if not next_slot then
    next_slot = t
  end
  local wait = next_slot - t
  next_slot = next_slot + interval_ms
  slots = slots + 1
  if wait < 0 then
    late = late + 1
    late_ms_sum = late_ms_sum - wait
    if -wait > late_ms_max then
      late_ms_max = -wait
    end
    return 0
  end
  return math.floor(wait)
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

local function json_number(x)
  return string.format("%.3f", x)
end

function done(summary, latency, requests)
  local all_statuses, total_late, total_slots, late_sum, late_max = {}, 0, 0, 0, 0
  for _, thread in ipairs(threads) do
    for status, count in pairs(thread:get("statuses")) do
      all_statuses[status] = (all_statuses[status] or 0) + count
    end
    total_late = total_late + thread:get("late")
    total_slots = total_slots + thread:get("slots")
    late_sum = late_sum + thread:get("late_ms_sum")
    late_max = math.max(late_max, thread:get("late_ms_max"))
  end
  local parts = {}
  for status, count in pairs(all_statuses) do
    table.insert(parts, string.format('"%d": %d', status, count))
  end
  local pct = {}
  for _, p in ipairs({ 50, 75, 90, 99, 99.9 }) do
    table.insert(pct, string.format('"%s": %d', tostring(p), latency:percentile(p)))
  end
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests": %d, "duration_us": %d, "bytes": %d, "latency_us": {"min": %d, "mean": %s, "max": %d, "stdev": %s, "percentiles": {%s}}, '
    .. '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, "statuses": {%s}, '
    .. '"schedule": {"slots": %d, "late": %d, "late_ms_mean": %s, "late_ms_max": %s}}\n',
    summary.requests, summary.duration, summary.bytes, latency.min, json_number(latency.mean), latency.max,
    json_number(latency.stdev), table.concat(pct, ", "), e.connect, e.read, e.write, e.status, e.timeout,
    table.concat(parts, ", "), total_slots, total_late, json_number(total_late > 0 and late_sum / total_late or 0),
    json_number(late_max)))
end
