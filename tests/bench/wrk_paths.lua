-- wrk -s wrk_paths.lua URL -- PATHS_FILE
-- GETs over many paths in turn: each line of PATHS_FILE is
-- "<path> <digest> <size>" (a manifest by tag or a blob). wrk does not say
-- which request an answer is for, so every answer must be a 200 whose
-- Docker-Content-Digest is one of the file's digests and whose body has that
-- digest's size; the others are counted in `bad`. The bench hashes one GET
-- of each path after the run. At the end, one machine-readable line like
-- wrk_report.lua's, which load.py parses.
local paths, sizes = {}, {}
local n, i = 0, 0
bad, bad_status, bad_len = 0, 0, 0

local threads = {}
function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  for line in io.lines(args[1]) do
    local p, d, s = line:match("^(%S+) (%S+) (%d+)$")
    if p then
      table.insert(paths, p)
      sizes[d] = tonumber(s)
    end
  end
  n = #paths
end

function request()
  i = i % n + 1
  return wrk.format("GET", paths[i])
end

-- HAProxy sends header names in lower case.
local function digest_of(headers)
  for k, v in pairs(headers) do
    if k:lower() == "docker-content-digest" then
      return v
    end
  end
  return nil
end

function response(status, headers, body)
  local d = digest_of(headers)
  if status ~= 200 or d == nil or sizes[d] ~= #body then
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
