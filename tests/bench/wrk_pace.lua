-- wrk (Debian 4.1, closed loop) paced to a request rate: each connection waits `interval` ms after
-- every response, so -c11 gives about 1,000 requests/s when responses take about 0.5 ms.
-- WRK_INTERVAL_MS overrides the 10 ms.
local interval = tonumber(os.getenv("WRK_INTERVAL_MS") or "10")
function delay()
  return interval
end
