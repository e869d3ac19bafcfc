-- wrk script: POSTs status callbacks, each a distinct event (its own sessionId), so every
-- request is a real insert rather than a duplicate. See BENCHMARKS.md, "How to run it".
--   wrk -t2 -c64 -d30s --latency -s bench/status.lua http://127.0.0.1:8080/voicecall/status

local counter = 0
local events = { "callout", "alerting", "answer", "disconnect" }

function setup(thread)
  counter = counter + 1
  thread:set("prefix", string.format("bench-%d-%d", os.time(), counter))
end

function init(args)
  n = 0
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json;charset=UTF-8"
end

function request()
  n = n + 1
  local body = string.format(
    '{"eventType":"%s","statusInfo":{"sessionId":"%s-%d@callenabler245.huaweicaas.com",' ..
    '"timestamp":"2026-11-24 06:00:00","caller":"+8613800000001","called":"+8613800000002",' ..
    '"userData":"order-%d"}}',
    events[(n % 4) + 1], prefix, n, n)
  return wrk.format(nil, nil, nil, body)
end
