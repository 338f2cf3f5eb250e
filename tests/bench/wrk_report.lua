-- wrk -s wrk_report.lua URL -- BODY_FILE
-- Every response must be a 200 whose body is exactly BODY_FILE's bytes:
-- wrk itself counts only statuses above 399 (a 302 is a success to it) and
-- never looks at bodies, so each thread counts the other answers in `bad`.
-- At the end, one machine-readable line with wrk's own summary (exact
-- counts, microseconds) and those counts, which load.py parses.
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "wrk_common.lua")
local want
function init(args)
  local f = assert(io.open(args[1], "rb"))
  want = f:read("*a")
  f:close()
end

function response(status, headers, body)
  if status ~= 200 or body ~= want then
    count_bad(status, body)
  end
end
