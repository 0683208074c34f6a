-- wrk script of bench/server_load.py: each connection (one a thread: -t N -c N)
-- uploads in a loop by the protocol's three steps, new, add (the profile named
-- after --), freeze; a step answered other than 200 starts the cycle again.
-- done() prints "cycles FROZEN failed FAILED" (each thread's counts).
local threads = {}
local body, state, rid = nil, "new", nil
frozen, failed = 0, 0

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  local f = assert(io.open(args[1], "rb"))
  body = f:read("*a")
  f:close()
end

function request()
  if state == "new" then
    return wrk.format("POST", "/api/runtime/new", {["Content-Type"] = "application/json"},
                      '{"argv": "load.py", "VM": "CPython"}')
  elseif state == "add" then
    return wrk.format("POST", "/api/runtime/upload/cpu/" .. rid .. "/add",
                      {["Content-Type"] = "application/octet-stream"}, body)
  end
  return wrk.format("POST", "/api/runtime/" .. rid .. "/freeze/", nil, "")
end

function response(status, headers, resp)
  if status ~= 200 then
    failed = failed + 1
    state = "new"
  elseif state == "new" then
    rid = resp:match('"runtime_id"%s*:%s*"(%x+)"')
    state = rid and "add" or "new"
  elseif state == "add" then
    state = "freeze"
  else
    frozen = frozen + 1
    state = "new"
  end
end

function done(summary, latency, requests)
  local f, e = 0, 0
  for _, t in ipairs(threads) do
    f = f + t:get("frozen")
    e = e + t:get("failed")
  end
  io.write(string.format("cycles %d failed %d\n", f, e))
end
