-- wrk script of bench/server_load.py: GET the paths of the file named after
-- --, one a line, in turn.
local paths, i = {}, 0

function init(args)
  for line in io.lines(args[1]) do
    table.insert(paths, line)
  end
end

function request()
  i = i % #paths + 1
  return wrk.format("GET", paths[i])
end
