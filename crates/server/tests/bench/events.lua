-- wrk script: POST {"type":"TICK"} to the instances listed in $IDS_FILE, round-robin.
local ids = {}
for line in io.lines(os.getenv("IDS_FILE")) do
  ids[#ids + 1] = line
end
local next_index = 0
local headers = { ["Content-Type"] = "application/json" }
local body = '{"type":"TICK"}'

request = function()
  next_index = next_index + 1
  local id = ids[(next_index % #ids) + 1]
  return wrk.format("POST", "/api/instances/" .. id .. "/events", headers, body)
end

done = function(summary, latency, requests)
  local errors = summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout
  io.write(string.format("requests/s %.0f  p50 %.2f ms  p99 %.2f ms  max %.2f ms  errors %d  requests %d\n",
    summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    latency.max / 1000, errors, summary.requests))
end
