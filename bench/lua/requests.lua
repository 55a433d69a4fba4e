-- wrk script: replay a list of requests, then print the figures as one JSON line.
--
--   wrk ... -s requests.lua URL -- FILE
--
-- FILE holds one request per line: "METHOD PATH [ACCEPT]". Each wrk thread
-- starts at its own offset in the list and cycles through it. wrk's HEAD
-- handling cannot skip a body announced by Content-Length, so HEAD requests
-- are sent with "Connection: keep-alive" and the response parser is told by
-- wrk.format's method; see README.md ("Load tools") if HEADs ever stall.

local threads = {}
local counter = 0

function setup(thread)
   counter = counter + 1
   thread:set("id", counter)
   table.insert(threads, thread)
end

local requests = {}
local position = 1

function init(args)
   local file = assert(io.open(args[1], "r"))
   for line in file:lines() do
      local method, path, accept = line:match("^(%S+)%s+(%S+)%s*(%S*)$")
      if method then
         local headers = {}
         if accept ~= "" then headers["Accept"] = accept end
         table.insert(requests, wrk.format(method, path, headers))
      end
   end
   file:close()
   position = ((id or 1) * 7919) % #requests + 1
end

function request()
   local r = requests[position]
   position = position % #requests + 1
   return r
end

function done(summary, latency, _)
   local e = summary.errors
   io.write(string.format(
      'WRKJSON {"requests": %d, "duration_us": %d, "bytes": %d, ' ..
      '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
      '"p50_us": %.1f, "p90_us": %.1f, "p99_us": %.1f, "mean_us": %.1f, "max_us": %.1f}\n',
      summary.requests, summary.duration, summary.bytes,
      e.connect, e.read, e.write, e.status, e.timeout,
      latency:percentile(50), latency:percentile(90), latency:percentile(99),
      latency.mean, latency.max))
end
