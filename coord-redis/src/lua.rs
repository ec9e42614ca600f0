//! The server-side scripts: one per operation, so that each operation is one `EVALSHA` (one
//! round trip) and one atomic step (Redis runs a script to its end before any other command).
//!
//! Every time stamp is the server's: `redis.call('TIME')`, in microseconds (exact in Lua's
//! doubles until the year 2255). Node clocks never reach the store. Numbers are written with
//! `%.0f`: Lua 5.1's `tostring` would print large integers in exponent notation.
//!
//! A script that fails half way leaves its earlier writes in place (Redis has no rollback),
//! so the writing scripts check the fence and parse every stored value they will touch before
//! their first write.

use std::sync::LazyLock;

use redis::Script;

/// Shared helpers, put in front of every script.
const PRELUDE: &str = r#"
local function now_us()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local function num(n) return string.format('%.0f', n) end
-- The holder of the token hash `key`, as a list: term, member, incarnation, renewed_at,
-- renewal ('' for a member when the token is released or was never taken).
local function holder(key)
  local t = redis.call('HMGET', key, 'term', 'member', 'incarnation', 'renewed_at', 'renewal')
  return {t[1] or '0', t[2] or '', t[3] or '', t[4] or '0', t[5] or '0'}
end
-- True when the token hash `key` names member ARGV[1], incarnation ARGV[2], term ARGV[3].
local function fence_holds(key)
  local t = redis.call('HMGET', key, 'term', 'member', 'incarnation')
  return t[1] == ARGV[3] and t[2] == ARGV[1] and t[3] == ARGV[2]
end
-- A heartbeat row `incarnation:at_us`, or nil.
local function parse_row(row)
  if not row then return nil end
  local inc, at = string.match(row, '^(%d+):(%d+)$')
  return inc, tonumber(at)
end
-- A ledger value `state:term:attempts[:error]` (`[:detail]` when handled or done): state
-- letter, attempts, the suffix.
local function parse_value(v)
  local s, a, rest = string.match(v, '^([chdfe]):%d+:(%d+)(.*)$')
  return s, a, rest
end
"#;

/// KEYS: token, members. ARGV: member, incarnation, liveness (µs).
/// Returns {other incarnation or '', term, member, incarnation, renewed_at, renewal, now}.
const HEARTBEAT: &str = r#"
local now = now_us()
local other = ''
local inc, at = parse_row(redis.call('HGET', KEYS[2], ARGV[1]))
if inc and inc ~= ARGV[2] and now - at <= tonumber(ARGV[3]) then other = inc end
if other == '' then
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[2] .. ':' .. num(now))
  local h = redis.call('HMGET', KEYS[1], 'member', 'incarnation')
  if h[1] == ARGV[1] and h[2] == ARGV[2] then
    redis.call('HSET', KEYS[1], 'renewed_at', num(now))
    redis.call('HINCRBY', KEYS[1], 'renewal', 1)
  end
end
local out = holder(KEYS[1])
table.insert(out, 1, other)
out[#out + 1] = num(now)
return out
"#;

/// KEYS: token. ARGV: member, incarnation, observed term, liveness (µs), the renewal
/// counter seen ('' when no holder was seen: not compared).
/// Returns the new term, or 0 when the takeover lost.
const TAKE_OVER: &str = r#"
local now = now_us()
local t = redis.call('HMGET', KEYS[1], 'term', 'member', 'renewed_at', 'renewal')
if (t[1] or '0') ~= ARGV[3] then return 0 end
if t[2] and now - tonumber(t[3] or '0') <= tonumber(ARGV[4]) then return 0 end
if t[2] and ARGV[5] ~= '' and (t[4] or '0') ~= ARGV[5] then return 0 end
local term = redis.call('HINCRBY', KEYS[1], 'term', 1)
redis.call('HSET', KEYS[1], 'member', ARGV[1], 'incarnation', ARGV[2], 'renewed_at', num(now))
redis.call('HINCRBY', KEYS[1], 'renewal', 1)
return term
"#;

/// KEYS: token, members. ARGV: member, incarnation, term. Returns 1.
const RELEASE: &str = r#"
if fence_holds(KEYS[1]) then
  redis.call('HDEL', KEYS[1], 'member', 'incarnation', 'renewed_at')
end
local inc = parse_row(redis.call('HGET', KEYS[2], ARGV[1]))
if inc == ARGV[2] then redis.call('HDEL', KEYS[2], ARGV[1]) end
return 1
"#;

/// KEYS: members. ARGV: member, incarnation. Returns 1.
const LEAVE: &str = r#"
local inc = parse_row(redis.call('HGET', KEYS[1], ARGV[1]))
if inc == ARGV[2] then redis.call('HDEL', KEYS[1], ARGV[1]) end
return 1
"#;

/// KEYS: token, members. Returns {term, member, incarnation, renewed_at, renewal, now,
/// member 1, row 1, member 2, row 2, ...}. Writes nothing.
const OBSERVE: &str = r#"
local now = now_us()
local out = holder(KEYS[1])
out[#out + 1] = num(now)
local rows = redis.call('HGETALL', KEYS[2])
for i = 1, #rows do out[#out + 1] = rows[i] end
return out
"#;

/// KEYS: members. Returns {now, member 1, row 1, ...}. Writes nothing.
const MEMBERS: &str = r#"
local out = {num(now_us())}
local rows = redis.call('HGETALL', KEYS[1])
for i = 1, #rows do out[#out + 1] = rows[i] end
return out
"#;

/// KEYS: token, ledger. ARGV: member, incarnation, term, field 1, field 2, ...
/// Returns {1, answer 1, answer 2, ...} (0: settled; n > 0: claimed, attempt n; n < 0:
/// claimed, attempt -n, a redelivery), or {0} when the fence does not hold.
/// The versions are applied in order, so a version named twice is claimed twice.
const CLAIM: &str = r#"
if not fence_holds(KEYS[1]) then return {0} end
for i = 4, #ARGV do
  local v = redis.call('HGET', KEYS[2], ARGV[i])
  if v and not parse_value(v) then
    return redis.error_reply('malformed ledger value at field ' .. ARGV[i])
  end
end
local out = {1}
for i = 4, #ARGV do
  local v = redis.call('HGET', KEYS[2], ARGV[i])
  local attempts, redelivery, rest = 1, false, ''
  local settled = false
  if v then
    local s, a, r = parse_value(v)
    if s == 'h' or s == 'd' or s == 'e' then
      settled = true
    else
      attempts = tonumber(a) + 1
      redelivery = s == 'c'
      rest = r
    end
  end
  if settled then
    out[#out + 1] = 0
  else
    redis.call('HSET', KEYS[2], ARGV[i], 'c:' .. ARGV[3] .. ':' .. num(attempts) .. rest)
    if redelivery then out[#out + 1] = -attempts else out[#out + 1] = attempts end
  end
end
return out
"#;

/// KEYS: token, ledger. ARGV: member, incarnation, term, then per update three values: kind
/// (a state letter for a set, `x` for a forget), field, error suffix ('' or ':' .. error).
/// Returns 1, or 0 when the fence does not hold. Applied in order; done is final.
const RECORD: &str = r#"
if not fence_holds(KEYS[1]) then return 0 end
for i = 4, #ARGV, 3 do
  local v = redis.call('HGET', KEYS[2], ARGV[i + 1])
  if v and not parse_value(v) then
    return redis.error_reply('malformed ledger value at field ' .. ARGV[i + 1])
  end
end
for i = 4, #ARGV, 3 do
  local kind, field = ARGV[i], ARGV[i + 1]
  if kind == 'x' then
    redis.call('HDEL', KEYS[2], field)
  else
    local v = redis.call('HGET', KEYS[2], field)
    local attempts, keep, suffix = '0', true, ARGV[i + 2]
    if v then
      local s, a, rest = parse_value(v)
      attempts = a
      if s == 'd' and kind ~= 'd' then keep = false end
      -- A handled or done row keeps its detail when the new handled or done value has none.
      if suffix == '' and (kind == 'h' or kind == 'd') and (s == 'h' or s == 'd') then
        suffix = rest
      end
    end
    if keep then
      redis.call('HSET', KEYS[2], field, kind .. ':' .. ARGV[3] .. ':' .. attempts .. suffix)
    end
  end
end
return 1
"#;

fn script(body: &str) -> Script {
    Script::new(&format!("{PRELUDE}{body}"))
}

pub(crate) static HEARTBEAT_SCRIPT: LazyLock<Script> = LazyLock::new(|| script(HEARTBEAT));
pub(crate) static TAKE_OVER_SCRIPT: LazyLock<Script> = LazyLock::new(|| script(TAKE_OVER));
pub(crate) static RELEASE_SCRIPT: LazyLock<Script> = LazyLock::new(|| script(RELEASE));
pub(crate) static LEAVE_SCRIPT: LazyLock<Script> = LazyLock::new(|| script(LEAVE));
pub(crate) static OBSERVE_SCRIPT: LazyLock<Script> = LazyLock::new(|| script(OBSERVE));
pub(crate) static MEMBERS_SCRIPT: LazyLock<Script> = LazyLock::new(|| script(MEMBERS));
pub(crate) static CLAIM_SCRIPT: LazyLock<Script> = LazyLock::new(|| script(CLAIM));
pub(crate) static RECORD_SCRIPT: LazyLock<Script> = LazyLock::new(|| script(RECORD));
