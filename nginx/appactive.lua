-- appactive nginx engine: the compiled router of src/rules/router.ts, ported to Lua for
-- lua-nginx-module (Debian's libnginx-mod-http-lua on nginx 1.22). Generated configs load it with
-- `init_by_lua_block { require("appactive").init(SETTINGS) }`, run `access()` in the proxied location and
-- `admin()` in the admin server. It is a PORT, proved against route() by test/gateway/nginx (every
-- conformance vector over HTTP plus a differential fuzz): change both sides together.
--
-- Strings: a route id is held as the UTF-8 encoding of the JavaScript string Node would see. Node decodes
-- request heads as latin1, so raw bytes >= 0x80 in a header, cookie or query count as latin1 characters;
-- percent-escapes decode as UTF-8 (decodeURIComponent: malformed -> the raw value is kept).

local cjson = require("cjson.safe")
local bit = require("bit")

local band, bor, bxor, lshift, rshift, tobit = bit.band, bit.bor, bit.bxor, bit.lshift, bit.rshift, bit.tobit
local byte, char, sub, find, lower, format = string.byte, string.char, string.sub, string.find, string.lower,
  string.format
local fmod, floor = math.fmod, math.floor
local concat = table.concat
local ngx = ngx

local M = { _VERSION = "1" }

local FENCED = 0x8000
local UNIT_MASK = 0x7fff
local MAX_KEY = 9007199254740991
local REDUCE_ABOVE = 900719925474099
local MAX_ROUTE_ID_BYTES = 256
local MAX_HOPS = 255
local PEER_HEADER = "x-appactive-peer"
local HOPS_TEXT = { [0] = "0", "1", "2" }
local RULES_PATH = "/_appactive/rules"

local S -- settings (per nginx generation; read in init)
local dict -- the shared dict holding `ver`, `rules:<ver>`
local cur_ver -- worker-local compiled rule set and its version
local cur
local held = 0 -- requests this worker holds for a fence now

---------------------------------------------------------------------------------------------------------
-- Key functions (src/rules/key.ts). nil = not numeric (NaN in TypeScript).

local function decimal_mod(id, m)
  local n = #id
  local first = byte(id, 1)
  local negative = first == 45
  local i = (negative or first == 43) and 2 or 1
  if i > n then return nil end
  local r = 0
  for j = i, n do
    local d = byte(id, j) - 48
    if d < 0 or d > 9 then return nil end
    r = r * 10 + d
    if r >= REDUCE_ABOVE then r = fmod(r, m) end
  end
  r = fmod(r, m)
  if negative and r ~= 0 then return m - r end
  return r
end

local INF = math.huge

local function decimal_value(id)
  local n = #id
  local first = byte(id, 1)
  local sign = first == 45 and -1 or 1
  local i = (first == 45 or first == 43) and 2 or 1
  if i > n then return nil end
  local r = 0
  for j = i, n do
    local d = byte(id, j) - 48
    if d < 0 or d > 9 then return nil end
    if r <= REDUCE_ABOVE then r = r * 10 + d else r = INF end
  end
  if r > MAX_KEY then r = INF end
  if r == 0 then return 0 end
  return sign * r
end

-- Math.imul(h, 0x01000193) as an int32: 0x01000193 = 2^24 + 403, each product exact in a double.
local function fnv_step(h, b)
  h = bxor(h, b)
  return tobit(lshift(h, 24) + (h % 4294967296) * 403)
end

-- FNV-1a 32 over the id's bytes (the UTF-8 form of the JavaScript string), unsigned.
local function fnv1a32(id)
  local h = tobit(0x811c9dc5)
  for j = 1, #id do h = fnv_step(h, byte(id, j)) end
  if h < 0 then h = h + 4294967296 end
  return h
end
M.fnv1a32 = fnv1a32

local function to_key(R, id)
  local k
  if R.head == "identity" then return decimal_value(id) end
  if R.head == "hash" then k = fnv1a32(id) else k = decimal_mod(id, R.m) end
  if k == nil then return nil end
  local tail = R.tail
  for i = 1, #tail do k = fmod(k, tail[i]) end
  return k
end

---------------------------------------------------------------------------------------------------------
-- The decision (src/rules/router.ts #lookup / route). Returns slot (unit index + 1, 0 = none), fenced,
-- reason, key (nil when there is none).

local function slot_of_key(R, key)
  local los, his, vals = R.los, R.his, R.vals
  local lo, hi = 1, #los
  while lo <= hi do
    local mid = floor((lo + hi) / 2)
    if los[mid] <= key then lo = mid + 1 else hi = mid - 1 end
  end
  if hi >= 1 and key <= his[hi] then return vals[hi] end
  return 0
end

local function decide(R, id, fallback)
  local code, reason, key
  if id == nil or id == "" then
    code, reason = fallback, "missing"
  else
    local label = R.labels[id]
    if label ~= nil then
      code, reason = label, "label"
    else
      key = to_key(R, id)
      if key == nil then
        code, reason = fallback, "not_numeric"
      elseif key < 0 or key > R.maxKey then
        code, reason = fallback, "uncovered"
      else
        local slot = slot_of_key(R, key)
        if band(slot, UNIT_MASK) == 0 then
          code, reason = bor(band(slot, FENCED), fallback), "uncovered"
        else
          code, reason = slot, "range"
        end
      end
    end
  end
  if id ~= nil and R.fenceOnly[id] then code = bor(code, FENCED) end
  if reason ~= "range" and reason ~= "uncovered" then key = nil end
  if key ~= nil and (key == INF or key == -INF) then key = nil end
  return band(code, UNIT_MASK), band(code, FENCED) ~= 0, reason, key
end

local function key_text(key)
  if key == nil then return nil end
  return format("%.0f", key)
end
M.key_text = key_text

local function encode_uri_component(s)
  return (s:gsub("[^A-Za-z0-9%-_%.!~%*'%(%)]", function(c) return format("%%%02X", byte(c)) end))
end

local function encode_text(text)
  if text == nil or #text == 0 or #text > MAX_ROUTE_ID_BYTES then return nil end
  if not find(text, "[^!#$&'*+%-.^_`|~0-9A-Za-z]") then return text end
  return encode_uri_component(text)
end

---------------------------------------------------------------------------------------------------------
-- Compiling a rule set as the Node side ships it (src/gateway/nginx/compile.ts).

local function is_int(v, min, max)
  return type(v) == "number" and v == floor(v) and v >= min and v <= max
end

local function resolve_fallback(spec, index, base)
  if spec == "reject" then return 0 end
  if spec == "local" then
    local i = index[S.unit]
    if i == nil then return base end
    return i
  end
  if type(spec) == "table" and type(spec.unit) == "string" then
    local i = index[spec.unit]
    if i == nil then return base end
    return i
  end
  return base
end

-- A rule set as tables, or nil and a sentence.
local function compile(text)
  local c = cjson.decode(text)
  if type(c) ~= "table" then return nil, "not JSON" end
  if c.format ~= 1 then return nil, "unknown format" end
  if not is_int(c.version, 0, MAX_KEY) then return nil, "bad version" end
  if type(c.units) ~= "table" or #c.units < 1 then return nil, "no units" end
  if type(c.sources) ~= "table" or #c.sources < 1 then return nil, "no id sources" end
  local R = { version = c.version, digest = c.digest, units = c.units, head = c.head, m = c.m or 0,
    tail = c.tail or {}, maxKey = c.maxKey, labels = {}, fenceOnly = {}, los = {}, his = {}, vals = {},
    sources = {} }
  local index = {}
  for i, u in ipairs(c.units) do
    if type(u) ~= "string" then return nil, "bad unit" end
    index[u] = i
  end
  local nunits = #c.units
  for i, s in ipairs(c.sources) do
    if type(s) ~= "table" or type(s.name) ~= "string" or s.name == "" then return nil, "bad id source" end
    if s.from ~= "query" and s.from ~= "header" and s.from ~= "cookie" then return nil, "bad id source" end
    local name = s.name
    if s.from == "header" then name = lower(name) end
    local var
    if s.from == "header" and not find(name, "[^a-z0-9_-]") then var = "http_" .. name:gsub("-", "_") end
    R.sources[i] = { from = s.from, name = name, var = var }
  end
  if R.head ~= "identity" and R.head ~= "mod" and R.head ~= "hash" then return nil, "bad transform" end
  if R.head == "mod" and not is_int(R.m, 1, 1e14) then return nil, "bad mod" end
  if type(R.tail) ~= "table" then return nil, "bad transform" end
  for _, d in ipairs(R.tail) do
    if not is_int(d, 1, 1e14) then return nil, "bad mod" end
  end
  if not is_int(R.maxKey, 0, MAX_KEY) then return nil, "bad maxKey" end
  if type(c.labels) == "table" then
    for label, v in pairs(c.labels) do
      if not is_int(v, 0, 0xffff) or band(v, UNIT_MASK) > nunits then return nil, "bad label" end
      R.labels[label] = v
    end
  end
  if type(c.fenceOnly) == "table" then
    for _, label in ipairs(c.fenceOnly) do R.fenceOnly[label] = true end
  end
  local segs = c.segs
  if type(segs) ~= "table" or #segs % 3 ~= 0 then return nil, "bad segments" end
  local prev = -1
  for i = 1, #segs, 3 do
    local lo, hi, v = segs[i], segs[i + 1], segs[i + 2]
    if not is_int(lo, 0, MAX_KEY) or not is_int(hi, lo, MAX_KEY) or lo <= prev then
      return nil, "overlapping or unsorted ranges"
    end
    if not is_int(v, 1, 0xffff) or band(v, UNIT_MASK) > nunits then return nil, "bad range value" end
    prev = hi
    local n = #R.los + 1
    R.los[n], R.his[n], R.vals[n] = lo, hi, v
  end
  R.versionText = format("%.0f", R.version)
  R.unitText = {}
  for _, u in ipairs(c.units) do R.unitText[u] = encode_text(u) end
  local base = resolve_fallback(c.fallback or "reject", index, 0)
  R.fallback = base
  R.appFallback = {}
  for _, app in ipairs(S.apps) do
    if app.fallback ~= nil then R.appFallback[app.name] = resolve_fallback(app.fallback, index, base) end
  end
  return R
end
M.compile = compile

-- The rule set in force: this worker's compiled copy, recompiled when the shared version moves.
local function current()
  local v = dict:get("ver")
  if v == nil then return nil end
  if v == cur_ver then return cur end
  for _ = 1, 3 do
    local text = dict:get("rules:" .. v)
    if text ~= nil then
      local R, err = compile(text)
      if R == nil then
        ngx.log(ngx.ERR, "appactive: rule set v", v, " does not compile: ", err)
        return cur
      end
      cur, cur_ver = R, v
      return R
    end
    v = dict:get("ver") -- replaced between the two reads
    if v == nil then return nil end
  end
  return cur
end

---------------------------------------------------------------------------------------------------------
-- Strings as Node sees them.

-- Byte classes, scanned with loops: LuaJIT compiles these, not string patterns (NYI in its JIT).
local HIGH, PCT_PLUS, NOT_SIMPLE = {}, { [37] = true, [43] = true }, {}
for b = 0, 255 do
  HIGH[b] = b >= 128 or nil
  local simple = (b >= 48 and b <= 57) or (b >= 65 and b <= 90) or (b >= 97 and b <= 122) or b == 45 or b == 46
    or b == 95
  NOT_SIMPLE[b] = not simple or nil
end

local function any_of(s, class)
  for i = 1, #s do
    if class[byte(s, i)] then return true end
  end
  return false
end

local function latin1_char(c)
  local b = byte(c)
  return char(0xc0 + rshift(b, 6), 0x80 + band(b, 0x3f))
end

-- No closure is created here: a function that creates one is not compiled by LuaJIT (NYI FNEW), and
-- every request calls this.
local function latin1(s)
  if not any_of(s, HIGH) then return s end
  return (s:gsub("[\128-\255]", latin1_char))
end

local function hexval(b)
  if b >= 48 and b <= 57 then return b - 48 end
  if b >= 65 and b <= 70 then return b - 55 end
  if b >= 97 and b <= 102 then return b - 87 end
  return nil
end

local function pct(s, i)
  if byte(s, i) ~= 37 then return nil end
  local h, l = hexval(byte(s, i + 1) or 0), hexval(byte(s, i + 2) or 0)
  if h == nil or l == nil then return nil end
  return h * 16 + l
end

-- decodeURIComponent: nil where JavaScript throws URIError.
local function decode_uri_component(s)
  local out, n, i, len = {}, 0, 1, #s
  while i <= len do
    local b = byte(s, i)
    if b ~= 37 then
      n = n + 1
      if b < 128 then out[n] = char(b) else out[n] = char(0xc0 + rshift(b, 6), 0x80 + band(b, 0x3f)) end
      i = i + 1
    else
      local b0 = pct(s, i)
      if b0 == nil then return nil end
      i = i + 3
      if b0 < 0x80 then
        n = n + 1
        out[n] = char(b0)
      else
        local count, min, cp
        if band(b0, 0xe0) == 0xc0 then count, min, cp = 1, 0x80, band(b0, 0x1f)
        elseif band(b0, 0xf0) == 0xe0 then count, min, cp = 2, 0x800, band(b0, 0x0f)
        elseif band(b0, 0xf8) == 0xf0 then count, min, cp = 3, 0x10000, band(b0, 0x07)
        else return nil end
        local bytes = { b0 }
        for k = 1, count do
          local bk = pct(s, i)
          if bk == nil or band(bk, 0xc0) ~= 0x80 then return nil end
          bytes[k + 1] = bk
          cp = cp * 64 + band(bk, 0x3f)
          i = i + 3
        end
        if cp < min or cp > 0x10ffff or (cp >= 0xd800 and cp <= 0xdfff) then return nil end
        n = n + 1
        out[n] = char(unpack(bytes))
      end
    end
  end
  return concat(out)
end

-- extract.ts decodeComponent: `+` is a space; a malformed escape leaves the value raw.
local function decode_component(raw)
  if not any_of(raw, PCT_PLUS) then return latin1(raw) end
  local d = decode_uri_component((raw:gsub("+", " ")))
  if d == nil then return latin1(raw) end
  return d
end

-- extract.ts queryParam over nginx's $args (the text after the first `?`).
local function query_param(args, name)
  if args == nil or args == "" then return nil end
  local stop = find(args, "#", 1, true)
  local n = stop and stop - 1 or #args
  local start = 1
  local nlen = #name
  while start <= n do
    local amp = find(args, "&", start, true)
    if amp == nil or amp > n then amp = n + 1 end
    local eq = find(args, "=", start, true)
    local name_end = (eq ~= nil and eq < amp) and eq or amp
    local raw = sub(args, start, name_end - 1)
    local matches = latin1(raw) == name
    if not matches and #raw >= nlen and any_of(raw, PCT_PLUS) then matches = decode_component(raw) == name end
    if matches then
      if name_end == amp then return nil end
      local value = sub(args, name_end + 1, amp - 1)
      if value == "" then return nil end
      return decode_component(value)
    end
    start = amp + 1
  end
  return nil
end

-- node:http keeps the first of a repeated header in this set and drops the rest; it joins `cookie` with
-- "; " and any other header with ", ".
local FIRST_ONLY = { age = true, authorization = true, ["content-length"] = true, ["content-type"] = true,
  etag = true, expires = true, from = true, host = true, ["if-modified-since"] = true,
  ["if-unmodified-since"] = true, ["last-modified"] = true, location = true, ["max-forwards"] = true,
  ["proxy-authorization"] = true, referer = true, ["retry-after"] = true, server = true,
  ["user-agent"] = true }

local raw_headers -- per request: lower-case name -> Node's value

local function node_headers()
  if raw_headers ~= nil then return raw_headers end
  local out = {}
  for name, value in pairs(ngx.req.get_headers(0, true)) do
    local lname = lower(name)
    local values = type(value) == "table" and value or { value }
    for _, v in ipairs(values) do
      local prev = out[lname]
      if prev == nil then out[lname] = v
      elseif lname == "cookie" then out[lname] = prev .. "; " .. v
      elseif not FIRST_ONLY[lname] then out[lname] = prev .. ", " .. v end
    end
  end
  raw_headers = out
  return out
end

local function header_value(name, var)
  -- $http_x_y also matches `x-y` and `x_y`: a cheap presence check before reading the real names.
  if var ~= nil and ngx.var[var] == nil then return nil end
  local v = node_headers()[name]
  if v == nil or v == "" then return nil end
  return latin1(v)
end

local function is_ows(b) return b == 32 or b == 9 end

-- extract.ts cookieValue (RFC 6265 pairs; names matched exactly; a quoted value unquoted).
local function cookie_value(header, name)
  local n = #header
  local start = 1
  local nlen = #name
  while start <= n do
    local semi = find(header, ";", start, true) or n + 1
    local a = start
    while a < semi and is_ows(byte(header, a)) do a = a + 1 end
    local eq = find(header, "=", a, true)
    if eq ~= nil and eq < semi then
      local name_end = eq
      while name_end > a and is_ows(byte(header, name_end - 1)) do name_end = name_end - 1 end
      if name_end - a == nlen and sub(header, a, name_end - 1) == name then
        local vs, ve = eq + 1, semi
        while vs < ve and is_ows(byte(header, vs)) do vs = vs + 1 end
        while ve > vs and is_ows(byte(header, ve - 1)) do ve = ve - 1 end
        if ve - vs >= 2 and byte(header, vs) == 34 and byte(header, ve - 1) == 34 then
          vs = vs + 1
          ve = ve - 1
        end
        if vs == ve then return nil end
        return sub(header, vs, ve - 1)
      end
    end
    start = semi + 1
  end
  return nil
end

local function extract(R)
  local sources = R.sources
  for i = 1, #sources do
    local s = sources[i]
    local v
    if s.from == "query" then
      v = query_param(ngx.var.args, s.name)
    elseif s.from == "header" then
      v = header_value(s.name, s.var)
    else
      local raw = ngx.var.http_cookie and node_headers()["cookie"]
      if raw ~= nil then v = cookie_value(latin1(raw), s.name) end
    end
    if v ~= nil and v ~= "" then return v end
  end
  return nil
end

---------------------------------------------------------------------------------------------------------
-- Hop headers (src/context/headers.ts).

local function trim_ows(v)
  return (v:gsub("^[ \t]+", ""):gsub("[ \t]+$", ""))
end

-- headers.ts singleHeader + decodeText/decodeInteger: absent when repeated with different values.
local function single_header(name)
  local v = ngx.req.get_headers(0)[name]
  if type(v) == "table" then
    local first = trim_ows(v[1])
    for i = 2, #v do if trim_ows(v[i]) ~= first then return nil end end
    return first
  end
  if v == nil then return nil end
  return trim_ows(v)
end

local function decode_text(value)
  if value == nil or #value > MAX_ROUTE_ID_BYTES * 3 or find(value, "[^\33-\126]") or value == "" then
    return nil
  end
  local text = value
  if find(value, "%", 1, true) then
    text = decode_uri_component(value)
    if text == nil then return nil end
  end
  if #text == 0 or #text > MAX_ROUTE_ID_BYTES then return nil end
  return text
end

local function read_hops()
  local v = single_header("x-appactive-hops")
  if v == nil or not find(v, "^%d+$") or #v > 3 or (#v > 1 and byte(v, 1) == 48) then return 0 end
  local n = tonumber(v)
  if n > MAX_HOPS then return 0 end
  return n
end

local function constant_time_equal(a, b)
  if type(a) ~= "string" or type(b) ~= "string" or #a ~= #b then return false end
  local diff = 0
  for i = 1, #a do diff = bor(diff, bxor(byte(a, i), byte(b, i))) end
  return diff == 0
end
M.constant_time_equal = constant_time_equal

-- The client's baggage without appactive members (without any when `all`, else only the route id, which
-- is written again), or nil when the client sent none. Other x-appactive-* headers are removed when `all`
-- (the known ones are replaced by proxy_set_header in any case).
local client_baggage

-- Whether the request head holds any header named x-appactive-* (in any case). One scan of the raw head,
-- not a table of every header: pairs() is not compiled by LuaJIT, and nor is a function that loops over
-- it, so that loop runs only when a client did send one.
local function sent_route_headers()
  if ngx.req.http_version() >= 2 then return true end -- raw_header() serves HTTP/1.x only
  local head = ngx.req.raw_header(true)
  if head == nil then return true end
  head = lower(head)
  return sub(head, 1, 12) == "x-appactive-" or find(head, "\nx-appactive-", 1, true) ~= nil
end

local function clear_route_headers()
  for name in pairs(ngx.req.get_headers(0, true)) do
    local lname = lower(name)
    if #lname > 12 and sub(lname, 1, 12) == "x-appactive-" then ngx.req.clear_header(name) end
  end
end

local function filter_baggage(raw, all)
  local kept = {}
  for member in (raw .. ","):gmatch("([^,]*),") do
    local key = trim_ows((member:match("^([^=;]*)") or ""))
    local ours = (all and sub(key, 1, 10) == "appactive.") or key == "appactive.route-id"
    if not ours and trim_ows(member) ~= "" then kept[#kept + 1] = trim_ows(member) end
  end
  return concat(kept, ",")
end

local function strip_route_headers(all)
  client_baggage = nil
  local raw = ngx.var.http_baggage
  if all then
    if sent_route_headers() then clear_route_headers() end
    if raw ~= nil then raw = node_headers()["baggage"] end
  end
  if raw == nil then return end
  client_baggage = filter_baggage(raw, all)
end

---------------------------------------------------------------------------------------------------------
-- Apps (src/gateway/apps.ts): apps bound to a host first, then the longest path prefix.

local function host_name(host)
  if host == nil or host == "" then return nil end
  local h = lower(host)
  if byte(h, 1) == 91 then
    local e = find(h, "]", 1, true)
    if e == nil then return h end
    return sub(h, 1, e)
  end
  local colon = find(h, ":", 1, true)
  if colon == nil then return h end
  return sub(h, 1, colon - 1)
end

local function prefix_matches(path, prefix)
  if prefix == "/" or prefix == "" then return true end
  if sub(path, 1, #prefix) ~= prefix then return false end
  if #path == #prefix or byte(prefix, #prefix) == 47 then return true end
  local nxt = byte(path, #prefix + 1)
  return nxt == 47 or nxt == 63 or nxt == 35
end

local function match_app(host, uri)
  local name = host_name(host)
  for _, app in ipairs(S.apps) do
    local ok = true
    if app.hostSet ~= nil then ok = name ~= nil and app.hostSet[name] == true end
    if ok and prefix_matches(uri, app.prefix) then return app end
  end
  return nil
end

---------------------------------------------------------------------------------------------------------
-- Answers.

local function send_error(status, code, message, retry_after)
  ngx.status = status
  ngx.header["content-type"] = "application/json; charset=utf-8"
  ngx.header["cache-control"] = "no-store"
  if retry_after ~= nil then ngx.header["retry-after"] = tostring(retry_after) end
  local body = cjson.encode({ error = { code = code, message = message } })
  ngx.header["content-length"] = #body
  ngx.print(body)
  return ngx.exit(ngx.HTTP_OK)
end

local SAFE_METHODS = { GET = true, HEAD = true, OPTIONS = true, TRACE = true }

local FENCED_MESSAGE = "this route id is being moved between units; retry shortly"

local function debug_header(d)
  if not S.debug then return end
  ngx.header["x-appactive-decision"] = cjson.encode({
    unit = d.unit or cjson.null,
    key = key_text(d.key) or cjson.null,
    fenced = d.fenced,
    reason = d.reason,
    version = d.version,
  })
end

-- One decision for this request (gateway.ts #decide): a decision table, or a refusal { status, code,
-- message, retry }. Answers nothing itself, so a held request always gets to count itself out.
local function decide_request(app, trusted_id)
  local R = current()
  if R == nil then return nil, { 503, "NO_RULES", "the gateway has no rule set yet", 1 } end
  if not app.unitEnabled then
    return { unit = S.unit, fenced = false, reason = "unit_disabled", version = R.version }
  end
  local id = trusted_id or extract(R)
  local slot, fenced, reason, key = decide(R, id, R.appFallback[app.name] or R.fallback)
  local d = { id = id, unit = slot > 0 and R.units[slot] or nil, fenced = fenced, reason = reason, key = key,
    version = R.version }
  if d.unit == nil then
    debug_header(d)
    return nil, { 400, "APPACTIVE_NO_ROUTE_ID", "no usable route id (" .. reason .. ") and the fallback rejects it" }
  end
  return d
end

-- Hold during fence (DESIGN §4): wait, without blocking the worker, for the next rule-set version, then
-- decide again; bounded in time (hold.maxMs) and count (hold.maxQueue per worker), then 503.
local function hold_until_unfenced(app, trusted_id, d)
  local hold = S.hold
  local fenced = { 503, "APPACTIVE_FENCED", FENCED_MESSAGE, hold.retryAfterS }
  if held >= hold.maxQueue then return nil, fenced end
  held = held + 1
  ngx.update_time()
  local deadline = ngx.now() + hold.maxMs / 1000
  local refusal
  while d ~= nil and d.fenced do
    local changed = false
    while true do
      local v = dict:get("ver")
      if v ~= nil and v ~= d.version then
        changed = true
        break
      end
      ngx.update_time()
      local left = deadline - ngx.now()
      if left <= 0 then break end
      ngx.sleep(left < 0.005 and left or 0.005)
    end
    if not changed then
      d, refusal = nil, fenced
    else
      d, refusal = decide_request(app, trusted_id)
    end
  end
  held = held - 1
  return d, refusal
end

function M.access()
  raw_headers = nil
  -- One app for any host and path (the common edge) needs neither $http_host nor $request_uri.
  local app = S.onlyApp or match_app(ngx.var.http_host, ngx.var.request_uri)
  if app == nil then
    return send_error(404, "NO_APP", "no app serves " .. (ngx.var.http_host or "") .. ngx.var.request_uri)
  end
  local trusted = false
  local hops = 0
  local trusted_id
  if S.peerToken ~= nil and ngx.var.http_x_appactive_peer ~= nil then
    local sent = ngx.req.get_headers(0)[PEER_HEADER]
    if type(sent) == "string" then trusted = constant_time_equal(sent, S.peerToken) end
  end
  if trusted then
    hops = read_hops()
    trusted_id = decode_text(single_header("x-appactive-route-id"))
  end
  strip_route_headers(not trusted)

  local d, refusal = decide_request(app, trusted_id)
  if d ~= nil and d.fenced then
    local hold = S.hold
    if ngx.var.http_upgrade ~= nil then
      d, refusal = nil, { 503, "APPACTIVE_FENCED", FENCED_MESSAGE, hold.retryAfterS }
    elseif hold.enabled and (hold.all or not SAFE_METHODS[ngx.req.get_method()]) then
      d, refusal = hold_until_unfenced(app, trusted_id, d)
    end
  end
  if d == nil then return send_error(refusal[1], refusal[2], refusal[3], refusal[4]) end
  debug_header(d)

  local peer = false
  local target
  if d.unit ~= S.unit and S.forwarding == "gateway" then
    if hops >= 1 then
      return send_error(508, "LOOP_DETECTED", "already forwarded once, and unit " .. d.unit ..
        " owns this route id")
    end
    target = S.peers[d.unit]
    if target == nil then
      return send_error(502, "NO_PEER_GATEWAY", "no gateway is configured for unit " .. d.unit)
    end
    peer = true
  else
    target = app.upstreams[d.unit]
    if target == nil then
      return send_error(503, "APPACTIVE_NO_PROVIDER", "app " .. app.name .. " has no upstreams in unit " ..
        d.unit, 1)
    end
  end

  -- The hop headers go out through proxy_set_header ... $aa_* (nginx.conf), which also drops any client copy.
  local var = ngx.var
  local id = d.id
  if id ~= nil then
    local encoded, member
    if #id <= MAX_ROUTE_ID_BYTES and not any_of(id, NOT_SIMPLE) then
      encoded, member = id, id
    else
      encoded = encode_text(id)
      if encoded ~= nil then member = encode_uri_component(id) end
    end
    if encoded ~= nil then
      var.aa_rid = encoded
      local baggage = client_baggage
      var.aa_bag = (baggage == nil or baggage == "") and "appactive.route-id=" .. member
        or baggage .. ",appactive.route-id=" .. member
    elseif client_baggage ~= nil then
      var.aa_bag = client_baggage
    end
  elseif client_baggage ~= nil then
    var.aa_bag = client_baggage
  end
  local R = cur
  var.aa_unit = R.unitText[d.unit] or encode_text(d.unit)
  var.aa_ver = R.versionText
  local out_hops = hops + (peer and 1 or 0)
  if out_hops ~= 0 then var.aa_hops = HOPS_TEXT[out_hops] or tostring(out_hops) end -- "0" is the default
  if peer then var.aa_peer = S.peerToken end
  var.aa_up = target.up
  if target.scheme ~= "http" then var.aa_scheme = target.scheme end -- "http" is the default
end

---------------------------------------------------------------------------------------------------------
-- Admin (a loopback or unix-socket server block): GET/PUT /_appactive/rules, GET /_appactive/health.

local function answer(status, value)
  ngx.status = status
  ngx.header["content-type"] = "application/json"
  ngx.header["cache-control"] = "no-store"
  ngx.print(cjson.encode(value))
  return ngx.exit(ngx.HTTP_OK)
end

local function loopback(addr)
  if addr == nil then return false end
  return addr == "unix:" or addr == "::1" or find(addr, "^127%.") ~= nil
end

local function state()
  local v = dict:get("ver")
  return { version = v or -1, digest = dict:get("digest") or cjson.null, generation = S.generation }
end

-- Stores a rule set: `rules:<v>` first, then `ver`, so a worker never reads a version without its rules.
local function store(R, text)
  local ok, err = dict:safe_set("rules:" .. format("%.0f", R.version), text)
  if not ok then return nil, err end
  local old = dict:get("ver")
  dict:set("digest", R.digest or "")
  dict:set("ver", R.version)
  if old ~= nil and old ~= R.version then dict:delete("rules:" .. format("%.0f", old)) end
  return true
end

local function read_body()
  ngx.req.read_body()
  local body = ngx.req.get_body_data()
  if body ~= nil then return body end
  local file = ngx.req.get_body_file()
  if file == nil then return nil end
  local f = io.open(file, "rb")
  if f == nil then return nil end
  body = f:read("*a")
  f:close()
  return body
end

local function put_rules()
  local text = read_body()
  if text == nil or text == "" then return answer(400, { error = { code = "BAD_RULES", message = "empty body" } }) end
  if #text > S.maxRulesBytes then
    return answer(413, { error = { code = "TOO_LARGE",
      message = "rule set of " .. #text .. " bytes is larger than " .. S.maxRulesBytes } })
  end
  local R, err = compile(text)
  if R == nil then return answer(400, { error = { code = "BAD_RULES", message = err } }) end
  -- One writer at a time across workers.
  local locked = dict:add("lock", true, 5)
  if not locked then return answer(503, { error = { code = "BUSY", message = "another update is running" } }) end
  local v = dict:get("ver")
  local result
  if v ~= nil and (R.version < v or (R.version == v and R.digest ~= dict:get("digest"))) then
    result = { 409, { error = { code = "STALE", message = "version " .. format("%.0f", R.version) ..
      " is not newer than version " .. format("%.0f", v) .. " in force" }, version = v } }
  elseif v ~= nil and R.version == v then
    result = { 200, { version = v, status = "duplicate" } }
  else
    local ok, serr = store(R, text)
    if ok then result = { 200, { version = R.version, status = "applied" } }
    else result = { 507, { error = { code = "NO_SPACE", message = "shared dict: " .. tostring(serr) } } } end
  end
  dict:delete("lock")
  return answer(result[1], result[2])
end

function M.admin()
  if not loopback(ngx.var.remote_addr) then
    return answer(403, { error = { code = "FORBIDDEN", message = "the admin endpoint answers loopback only" } })
  end
  local auth = ngx.var.http_authorization
  local token = auth and auth:match("^[Bb]earer (.+)$")
  if not constant_time_equal(token, S.token) then
    ngx.header["www-authenticate"] = "Bearer"
    return answer(401, { error = { code = "UNAUTHORIZED", message = "a valid bearer token is required" } })
  end
  local uri, method = ngx.var.uri, ngx.req.get_method()
  if uri == RULES_PATH then
    if method == "GET" then return answer(200, state()) end
    if method == "PUT" then return put_rules() end
    ngx.header["allow"] = "GET, PUT"
    return answer(405, { error = { code = "METHOD", message = "use GET or PUT" } })
  end
  if uri == "/_appactive/health" then
    local s = state()
    s.held = held
    return answer(200, s)
  end
  return answer(404, { error = { code = "NOT_FOUND", message = "no such admin endpoint" } })
end

---------------------------------------------------------------------------------------------------------
-- init (master, at start and at every reload): settings, then the state file when it is newer.

local function read_file(path)
  local f = io.open(path, "rb")
  if f == nil then return nil end
  local text = f:read("*a")
  f:close()
  return text
end

function M.init(settings_path)
  local text = read_file(settings_path)
  if text == nil then error("appactive: cannot read settings " .. settings_path) end
  S = cjson.decode(text)
  if type(S) ~= "table" then error("appactive: settings " .. settings_path .. " is not JSON") end
  if S.peerToken == cjson.null then S.peerToken = nil end
  for _, app in ipairs(S.apps) do
    if app.fallback == cjson.null then app.fallback = nil end
    if #app.hosts > 0 then
      app.hostSet = {}
      for _, h in ipairs(app.hosts) do app.hostSet[h] = true end
    end
  end
  local first = S.apps[1]
  if #S.apps == 1 and first.hostSet == nil and (first.prefix == "/" or first.prefix == "") then S.onlyApp = first end
  dict = ngx.shared[S.dict]
  if dict == nil then error("appactive: no lua_shared_dict " .. S.dict) end
  local state_text = read_file(S.stateFile)
  if state_text == nil then return end
  local R, err = compile(state_text)
  if R == nil then
    ngx.log(ngx.ERR, "appactive: state file ", S.stateFile, " ignored: ", err)
    return
  end
  local v = dict:get("ver")
  if v == nil or R.version > v then
    local ok, serr = store(R, state_text)
    if not ok then ngx.log(ngx.ERR, "appactive: state file does not fit the shared dict: ", serr) end
  end
end

-- For tests of the port: the decision for a raw id under a compiled rule-set text.
function M.route_text(text, id)
  local R, err = compile(text)
  if R == nil then return nil, err end
  local slot, fenced, reason, key = decide(R, id, R.fallback)
  return slot > 0 and R.units[slot] or nil, key, fenced, reason
end

return M
