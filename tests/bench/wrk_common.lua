-- What wrk_report.lua and wrk_paths.lua share, loaded by each with dofile:
-- the threads kept for `done`, the per-thread count of bad answers (globals,
-- which done reads with thread:get), and the summary line load.py parses.
bad, bad_status, bad_len = 0, 0, 0

local threads = {}
function setup(thread)
  table.insert(threads, thread)
end

-- A bad answer, counted in this thread.
function count_bad(status, body)
  bad, bad_status, bad_len = bad + 1, status, #body
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
