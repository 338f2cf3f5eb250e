-- wrk -s wrk_paths.lua URL -- PATHS_FILE
-- GETs over many paths in turn: each line of PATHS_FILE is
-- "<path> <digest> <size>" (a manifest by tag or a blob). wrk does not say
-- which request an answer is for, so every answer must be a 200 whose
-- Docker-Content-Digest is one of the file's digests and whose body has that
-- digest's size; the others are counted in `bad`. The bench hashes one GET
-- of each path after the run. At the end, one machine-readable line like
-- wrk_report.lua's, which load.py parses.
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "wrk_common.lua")
local paths, sizes = {}, {}
local n, i = 0, 0

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
    count_bad(status, body)
  end
end
