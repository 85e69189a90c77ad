-- Read-only presence queries over the live incarnations; answers JSON text.
-- ARGV: P, node timeout (ms), kind, args:
--   'room' ns room | 'user' user ns... | 'conn' id | 'count' [ns] | 'stats'
-- An entry is [id, nodeId, namespace, userId|null, rooms].
local timeout, kind = tonumber(ARGV[2]), ARGV[3]
local now = now_ms()
local live = redis.call('ZRANGEBYSCORE', P .. ':nodes', now - timeout, '+inf')

local function entry(I, id)
  local ns = redis.call('HGET', ikey(I, 'cn'), id)
  if not ns then
    return nil
  end
  local user = redis.call('HGET', ikey(I, 'cu'), id)
  return { id, node_of_incarnation(I), ns, user or cjson.null, redis.call('SMEMBERS', ikey(I, 'cr:' .. id)) }
end

local function members(set_part)
  local out = {}
  for _, I in ipairs(live) do
    for _, id in ipairs(redis.call('SMEMBERS', ikey(I, set_part))) do
      local e = entry(I, id)
      if e then
        out[#out + 1] = e
      end
    end
  end
  return out
end

if kind == 'room' then
  return cjson.encode(members('r:' .. nsname(ARGV[4], ARGV[5])))
elseif kind == 'user' then
  local out = {}
  for k = 5, #ARGV do
    for _, e in ipairs(members('u:' .. nsname(ARGV[k], ARGV[4]))) do
      out[#out + 1] = e
    end
  end
  return cjson.encode(out)
elseif kind == 'conn' then
  local node = string.match(ARGV[4], '^(.*):[^:]*$')
  local I = node and redis.call('HGET', P .. ':inc', node)
  local score = I and redis.call('ZSCORE', P .. ':nodes', I)
  if score and tonumber(score) >= now - timeout then
    return cjson.encode(entry(I, ARGV[4]) or cjson.null)
  end
  return 'null'
elseif kind == 'count' then
  local total = 0
  for _, I in ipairs(live) do
    if ARGV[4] then
      total = total + (tonumber(redis.call('HGET', ikey(I, 'n'), ARGV[4])) or 0)
    else
      for _, n in ipairs(redis.call('HVALS', ikey(I, 'n'))) do
        total = total + tonumber(n)
      end
    end
  end
  return cjson.encode(total)
elseif kind == 'stats' then
  local connections, rooms, users = 0, {}, {}
  local nrooms, nusers = 0, 0
  for _, I in ipairs(live) do
    for _, n in ipairs(redis.call('HVALS', ikey(I, 'n'))) do
      connections = connections + tonumber(n)
    end
    for _, r in ipairs(redis.call('SMEMBERS', ikey(I, 'rooms'))) do
      if not rooms[r] then
        rooms[r] = true
        nrooms = nrooms + 1
      end
    end
    for _, u in ipairs(redis.call('SMEMBERS', ikey(I, 'users'))) do
      if not users[u] then
        users[u] = true
        nusers = nusers + 1
      end
    end
  end
  return cjson.encode({ #live, connections, nrooms, nusers })
end
return redis.error_reply('ferrosocket: unknown presence query ' .. tostring(kind))
