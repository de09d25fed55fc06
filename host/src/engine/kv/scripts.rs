//! The Lua scripts of the Redis store (`redis.rs`): each runs atomically
//! on the server (no other client in between), which is what makes a
//! call's commit one step: its read set checked, its quota checked, its
//! writes applied, its events appended and published, or none of it.
//! `PRELUDE` is prepended to every one but `SWEEP`.

/// What every script below starts with: the module's key prefix, a key's
/// version (0: absent or expired; 1: written before versions were kept),
/// a listing, and the check of a call's reads.
///
/// A read set in ARGV, from index `i`: its length, then for each read
/// either `k`, key, version or `r`, min, max, limit (a listing's range, as
/// `ZRANGE BYLEX` takes it), the number of keys it found, then each key
/// and version.
pub const PRELUDE: &str = r"
local p = 'house:kv:{' .. ARGV[1] .. '}:'
local function ver(key)
  if redis.call('EXISTS', p .. 'v:' .. key) == 0 then return 0 end
  return tonumber(redis.call('HGET', p .. 'ver', key)) or 1
end
local function range(min, max, limit, values, may_skip)
  local out, found, offset, skipped = {}, 0, 0, 0
  while found < limit do
    local batch = redis.call('ZRANGE', p .. 'keys', min, max, 'BYLEX', 'LIMIT', offset, limit - found)
    if #batch == 0 then break end
    offset = offset + #batch
    for _, key in ipairs(batch) do
      local vk = p .. 'v:' .. key
      local v
      if values then v = redis.call('GET', vk) else v = redis.call('EXISTS', vk) == 1 end
      if v then
        found = found + 1
        out[#out + 1] = key
        out[#out + 1] = ver(key)
        if values then out[#out + 1] = v end
      else
        skipped = skipped + 1
        if skipped > may_skip then return nil, skipped end
      end
    end
  end
  return out, skipped
end
local function check(i)
  local n = tonumber(ARGV[i])
  i = i + 1
  local changed = nil
  for _ = 1, n do
    if ARGV[i] == 'k' then
      if changed == nil and ver(ARGV[i + 1]) ~= tonumber(ARGV[i + 2]) then changed = ARGV[i + 1] end
      i = i + 3
    else
      local m = tonumber(ARGV[i + 4])
      if changed == nil then
        local now = range(ARGV[i + 1], ARGV[i + 2], tonumber(ARGV[i + 3]), false, 1e15)
        local same = #now == 2 * m
        for j = 1, m do
          if same and (now[2 * j - 1] ~= ARGV[i + 3 + 2 * j] or now[2 * j] ~= tonumber(ARGV[i + 4 + 2 * j])) then
            same = false
          end
        end
        if not same then changed = ARGV[i + 1] end
      end
      i = i + 5 + 2 * m
    end
  end
  return changed, i
end
";

/// Reads a key, if the call's earlier reads still hold. ARGV: the module,
/// the key, the read set. Returns `ok`, the value (or nil), its version;
/// or `conflict` and a key whose version changed.
pub const READ: &str = r"
local changed = check(3)
if changed then return {'conflict', changed} end
local v = redis.call('GET', p .. 'v:' .. ARGV[2])
if not v then return {'ok', false, 0} end
return {'ok', v, ver(ARGV[2])}
";

/// Lists a module's live keys in a lexical range, if the call's earlier
/// reads still hold. ARGV: the module, the range's ends, the limit, `1`
/// for values too, the expired keys it may step over, the read set.
/// Returns `ok`, the number stepped over, then key, version (and value)
/// for each; `conflict` and a key; or `skip` when over the budget. Keys
/// whose value has expired but that the sweep has not tidied yet are
/// stepped over.
pub const LIST: &str = r"
local changed = check(7)
if changed then return {'conflict', changed} end
local out, skipped = range(ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5] == '1', tonumber(ARGV[6]))
if not out then return {'skip'} end
table.insert(out, 1, skipped)
table.insert(out, 1, 'ok')
return out
";

/// Commits one call: its writes and its events, if nothing it read has
/// changed, its module stays within its quota, and this commit (by its id)
/// was not applied already. ARGV: the module, the commit's id, the quota in
/// bytes, the events a channel's history keeps and its idle ms, the number
/// of writes, the read set, then for each write its op (`s`et, `d`elete,
/// `i`ncrement), key, value or delta, and expiry (ms since the epoch, `0`:
/// none), then for each event its channel and its framed body. Each event
/// is appended to its channel's history, which gives it its id, and
/// published with that id (as the engine's own events are: `engine::redis`).
/// Returns `ok`, `dup` (applied before: a resend), `conflict` and a key, or
/// `quota`. It checks everything before it writes anything: a script's
/// writes are not undone if it stops half-way. The id is kept for a minute:
/// a resend is sent within `RESEND_FOR` of the first, and a commit that
/// read what it writes could not apply twice anyway (its second arrival
/// finds the versions it read changed by its first); a minute of ids at
/// thousands of commits a second is a few MiB of Redis's memory.
pub const COMMIT: &str = r"
local applied = p .. 'tx:' .. ARGV[2]
if redis.call('EXISTS', applied) == 1 then return {'dup'} end
local changed, first = check(7)
if changed then return {'conflict', changed} end
local last = first + 4 * tonumber(ARGV[6]) - 1
local keys, sizes, expiries = p .. 'keys', p .. 'sizes', p .. 'expiries'
local size, grow = {}, 0
for i = first, last, 4 do
  local op, key, arg = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  if size[key] == nil then size[key] = tonumber(redis.call('HGET', sizes, key)) or 0 end
  local new = 0
  if op == 's' then new = #key + #arg elseif op == 'i' then new = #key + 20 end
  grow = grow + new - size[key]
  size[key] = new
end
if grow > 0 and (tonumber(redis.call('GET', p .. 'usage')) or 0) + grow > tonumber(ARGV[3]) then
  return {'quota'}
end
local version = redis.call('INCR', p .. 'seq') + 1
local used = 0
for i = first, last, 4 do
  local op, key, arg, expires = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local vk = p .. 'v:' .. key
  local old = tonumber(redis.call('HGET', sizes, key)) or 0
  if op == 'd' then
    redis.call('DEL', vk)
    redis.call('ZREM', keys, key)
    redis.call('ZREM', expiries, key)
    redis.call('HDEL', sizes, key)
    redis.call('HDEL', p .. 'ver', key)
    used = used - old
  else
    if op == 's' then
      if expires ~= '0' then
        redis.call('SET', vk, arg, 'PXAT', expires)
        redis.call('ZADD', expiries, expires, key)
      else
        redis.call('SET', vk, arg)
        redis.call('ZREM', expiries, key)
      end
    else
      -- A value that is no longer an integer counts from 0 (as in the
      -- embedded store), keeping its time-to-live; one that would
      -- overflow stays as it is.
      local r = redis.pcall('INCRBY', vk, arg)
      if type(r) == 'table' and r.err and not string.find(r.err, 'overflow') then
        redis.call('SET', vk, arg, 'KEEPTTL')
      end
    end
    local new = #key + redis.call('STRLEN', vk)
    redis.call('HSET', sizes, key, new)
    redis.call('HSET', p .. 'ver', key, version)
    redis.call('ZADD', keys, 0, key)
    used = used + new - old
  end
end
if used ~= 0 then redis.call('INCRBY', p .. 'usage', used) end
if last >= first then redis.call('SADD', 'house:kv:modules', ARGV[1]) end
local trim = ARGV[4] == '0' and '=' or '~'
for i = last + 1, #ARGV, 2 do
  local stream = 'house:history:' .. ARGV[i]
  local id = redis.call('XADD', stream, 'MAXLEN', trim, ARGV[4], '*', 'e', ARGV[i + 1])
  redis.call('PEXPIRE', stream, ARGV[5])
  redis.call('PUBLISH', 'house:' .. ARGV[i], '\2id: ' .. id .. '\n' .. ARGV[i + 1])
end
redis.call('SET', applied, 1, 'PX', 60000)
return {'ok'}
";

/// Tidies after keys Redis has expired: their entries in the key set and
/// the sizes, and their bytes in the module's usage. ARGV: at most this
/// many keys. Run by every host each second (it is idempotent; with
/// nothing due it costs a few lookups).
pub const SWEEP: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local budget = tonumber(ARGV[1])
for _, m in ipairs(redis.call('SMEMBERS', 'house:kv:modules')) do
  if budget <= 0 then break end
  local p = 'house:kv:{' .. m .. '}:'
  local due = redis.call('ZRANGEBYSCORE', p .. 'expiries', '-inf', now, 'LIMIT', 0, budget)
  local freed = 0
  for _, key in ipairs(due) do
    local left = redis.call('PTTL', p .. 'v:' .. key)
    if left == -2 then
      freed = freed + (tonumber(redis.call('HGET', p .. 'sizes', key)) or 0)
      redis.call('HDEL', p .. 'sizes', key)
      redis.call('HDEL', p .. 'ver', key)
      redis.call('ZREM', p .. 'keys', key)
      redis.call('ZREM', p .. 'expiries', key)
    elseif left == -1 then
      redis.call('ZREM', p .. 'expiries', key)
    else
      redis.call('ZADD', p .. 'expiries', now + left, key)
    end
  end
  if freed > 0 then redis.call('DECRBY', p .. 'usage', freed) end
  budget = budget - #due
end
return 0
";
