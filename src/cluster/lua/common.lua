-- Shared by every presence script (prepended to each). ARGV[1] is the key prefix P.
--
-- Each node writes its presence under one *incarnation* I = "<nodeId>#<epoch>", listed in the
-- sorted set P:nodes with the Redis time of its last heartbeat as score, and named as the node's
-- current one in the hash P:inc. Queries read only incarnations whose heartbeat is younger than
-- the node timeout, so a dead node disappears from every answer when its timeout passes, before
-- its keys are deleted (reaped, a bounded amount per heartbeat of any node).
--
-- Keys of incarnation I (ids are global connection ids, "<nodeId>:<n>"; a (namespace, name) pair
-- is written "<len(ns)>:<ns>:<name>" so no name can collide with another namespace's):
--   P:i:I:cn          hash  id -> namespace
--   P:i:I:cu          hash  id -> user id
--   P:i:I:cr:<id>     set   rooms of the connection
--   P:i:I:r:<ns,room> set   ids in the room
--   P:i:I:u:<ns,user> set   ids of the user
--   P:i:I:rooms       set   <ns,room> with members here;  P:i:I:users  the same for users
--   P:i:I:n           hash  namespace -> connection count
local P = ARGV[1]

local function nsname(ns, name)
  return #ns .. ':' .. ns .. ':' .. name
end

local function ikey(I, part)
  return P .. ':i:' .. I .. ':' .. part
end

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function node_of_incarnation(I)
  return string.match(I, '^(.*)#[^#]*$')
end

local function add_room(I, id, ns, room)
  if redis.call('SADD', ikey(I, 'cr:' .. id), room) == 1 then
    local key = nsname(ns, room)
    redis.call('SADD', ikey(I, 'r:' .. key), id)
    redis.call('SADD', ikey(I, 'rooms'), key)
  end
end

local function remove_room(I, id, ns, room)
  if redis.call('SREM', ikey(I, 'cr:' .. id), room) == 1 then
    local key = nsname(ns, room)
    local set = ikey(I, 'r:' .. key)
    redis.call('SREM', set, id)
    if redis.call('SCARD', set) == 0 then
      redis.call('SREM', ikey(I, 'rooms'), key)
    end
  end
end

-- user '' = none
local function set_user(I, id, ns, user)
  local old = redis.call('HGET', ikey(I, 'cu'), id)
  if old then
    local key = nsname(ns, old)
    local set = ikey(I, 'u:' .. key)
    redis.call('SREM', set, id)
    if redis.call('SCARD', set) == 0 then
      redis.call('SREM', ikey(I, 'users'), key)
    end
    redis.call('HDEL', ikey(I, 'cu'), id)
  end
  if user ~= '' then
    local key = nsname(ns, user)
    redis.call('HSET', ikey(I, 'cu'), id, user)
    redis.call('SADD', ikey(I, 'u:' .. key), id)
    redis.call('SADD', ikey(I, 'users'), key)
  end
end

local function open(I, id, ns, user)
  if redis.call('HSETNX', ikey(I, 'cn'), id, ns) == 1 then
    redis.call('HINCRBY', ikey(I, 'n'), ns, 1)
  end
  set_user(I, id, ns, user)
end

local function close(I, id)
  local ns = redis.call('HGET', ikey(I, 'cn'), id)
  if not ns then
    return
  end
  for _, room in ipairs(redis.call('SMEMBERS', ikey(I, 'cr:' .. id))) do
    remove_room(I, id, ns, room)
  end
  set_user(I, id, ns, '')
  redis.call('HDEL', ikey(I, 'cn'), id)
  if redis.call('HINCRBY', ikey(I, 'n'), ns, -1) <= 0 then
    redis.call('HDEL', ikey(I, 'n'), ns)
  end
end

-- No longer answered by queries; its keys are deleted by reap().
local function retire(I)
  redis.call('ZREM', P .. ':nodes', I)
  redis.call('SADD', P .. ':reap', I)
  local node = node_of_incarnation(I)
  if node and redis.call('HGET', P .. ':inc', node) == I then
    redis.call('HDEL', P .. ':inc', node)
  end
end

-- Deletes up to `budget` connections of retired incarnations; returns how many incarnations
-- still have keys left.
local function reap(budget)
  for _, R in ipairs(redis.call('SMEMBERS', P .. ':reap')) do
    if budget <= 0 then
      break
    end
    local scan = redis.call('HSCAN', ikey(R, 'cn'), 0, 'COUNT', budget)
    for i = 1, #scan[2], 2 do
      close(R, scan[2][i])
      budget = budget - 1
    end
    if redis.call('HLEN', ikey(R, 'cn')) == 0 then
      redis.call('DEL', ikey(R, 'cn'), ikey(R, 'cu'), ikey(R, 'n'), ikey(R, 'rooms'), ikey(R, 'users'))
      redis.call('SREM', P .. ':reap', R)
    end
  end
  return redis.call('SCARD', P .. ':reap')
end
