-- wrk -s wrk_report.lua URL -- BODY_FILE
-- Every response must be a 200 whose body is exactly BODY_FILE's bytes:
-- wrk itself counts only statuses above 399 (a 302 is a success to it) and
-- never looks at bodies, so each thread counts the other answers in `bad`.
-- At the end, one machine-readable line with wrk's own summary (exact
-- counts, microseconds) and those counts, which load.py parses.
local want
bad, bad_status, bad_len = 0, 0, 0

local threads = {}
function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  local f = assert(io.open(args[1], "rb"))
  want = f:read("*a")
  f:close()
end

function response(status, headers, body)
  if status ~= 200 or body ~= want then
    bad, bad_status, bad_len = bad + 1, status, #body
  end
end

done = function(summary, latency, requests)
  local nbad, st, len = 0, 0, 0
  for _, t in ipairs(threads) do
    if t:get("bad") > 0 then
      nbad, st, len = nbad + t:get("bad"), t:get("bad_status"), t:get("bad_len")
    end
  end
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"bytes":%d,"p50_us":%d,"p99_us":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"timeout":%d,"bad_answer":%d},' ..
    '"status_over_399":%d,"bad_example":{"status":%d,"body_bytes":%d}}\n',
    summary.requests, summary.duration, summary.bytes,
    latency:percentile(50), latency:percentile(99),
    e.connect, e.read, e.write, e.timeout, nbad, e.status, st, len))
end
