-- wrk script: POST a creation with a 5-field business context, a distinct order number each time.
local counter = 0
local thread_id = 0
local headers = { ["Content-Type"] = "application/json" }

setup = function(thread)
  thread:set("thread_id", thread_id)
  thread_id = thread_id + 1
end

request = function()
  counter = counter + 1
  local n = thread_id * 100000000 + counter
  local body = string.format(
    '{"machineName":"Counter","context":{"orderId":"ORD-%08d","customerId":"C-%06d","amount":1234.5,"currency":"EUR","status":"new"}}',
    n % 100000000, n % 1000000)
  return wrk.format("POST", "/api/components/Bench/instances", headers, body)
end

done = function(summary, latency, requests)
  local errors = summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout
  io.write(string.format("created/s %.0f  requests %d  errors %d\n",
    summary.requests / (summary.duration / 1e6), summary.requests, errors))
end
