-- Realistic /track/ce pageviews of a browser SDK: 14 parameters, a cookie per visitor.
-- BENCH_DELAY_MS (optional) spaces the requests of each connection to hold a lower rate.
local delay_ms = tonumber(os.getenv("BENCH_DELAY_MS") or "0")
local counter = 0

request = function()
  counter = counter + 1
  local visitor = math.random(1, 50000)
  local path = "/track/ce?project=bench.example&event=pv&cookie=ck" .. visitor ..
    "&timestamp=" .. (1790000000000 + counter) ..
    "&ce_url=https%3A%2F%2Fshop.example%2Fproducts%2F" .. (counter % 500) ..
    "%3Futm_source%3Dnewsletter%26utm_medium%3Demail" ..
    "&ce_title=Product+" .. (counter % 500) .. "+-+Shop" ..
    "&ce_domain=shop.example&cv_name=Visitor+" .. visitor ..
    "&cs_landing=%2Fhome&browser=Chrome&os=Mac+OS+X&device=desktop" ..
    "&screen=1920x1080&language=en-US&timeout=300000&referer=https%3A%2F%2Fwww.google.com%2F"
  return wrk.format("GET", path, {["User-Agent"] = "Mozilla/5.0 (Macintosh) Chrome/126.0"})
end

if delay_ms > 0 then
  delay = function() return delay_ms end
end
