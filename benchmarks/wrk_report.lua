-- wrk script: each request carries the next bearer token from $WRK_TOKENS (one a line;
-- none: no Authorization header), and the run ends with one JSON line of figures. A line
-- may give the request's path and query after the token and a tab (an API token's check
-- names its target); without one the request goes to the URL's path.
local tokens = {}
local counter = 0

function init(args)
  local path = os.getenv("WRK_TOKENS")
  if path and path ~= "" then
    for line in io.lines(path) do
      if line ~= "" then
        local token, path = line:match("^([^\t]+)\t?(.*)$")
        tokens[#tokens + 1] = {token, path ~= "" and path or nil}
      end
    end
  end
end

function request()
  counter = counter + 1
  if #tokens == 0 then
    return wrk.format("GET", nil, {["Accept"] = "application/json"})
  end
  local entry = tokens[(counter - 1) % #tokens + 1]
  return wrk.format("GET", entry[2], {
    ["Accept"] = "application/json",
    ["Authorization"] = "Bearer " .. entry[1],
  })
end

function done(summary, latency, requests)
  local seconds = summary.duration / 1e6
  io.write(string.format(
    'WRK_JSON {"requests": %d, "seconds": %.3f, "rps": %.1f, ' ..
    '"p50_ms": %.2f, "p90_ms": %.2f, "p99_ms": %.2f, "max_ms": %.2f, "mean_ms": %.2f, ' ..
    '"errors_connect": %d, "errors_read": %d, "errors_write": %d, "errors_status": %d, ' ..
    '"errors_timeout": %d}\n',
    summary.requests, seconds, summary.requests / seconds,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000, latency.mean / 1000,
    summary.errors.connect, summary.errors.read, summary.errors.write,
    summary.errors.status, summary.errors.timeout))
end
