-- A node's lifecycle in presence. ARGV: P, I, node id, mode, node timeout (ms), reap budget.
--   'hello': I becomes the node's live incarnation (a previous one of the same node id is
--            retired: that process is gone, this one replaces it).
--   'beat':  refreshes I's heartbeat (returns alive = 0 if I was retired meanwhile: the node
--            then restores under a new incarnation), retires incarnations silent for longer
--            than the timeout.
--   'bye':   retires I (graceful shutdown: gone from queries at once).
--   'reap':  nothing else (a leaving node deleting its own keys).
-- Every mode then reaps a bounded amount. Returns { alive, incarnations left to reap }.
local I, node, mode = ARGV[2], ARGV[3], ARGV[4]
local timeout, budget = tonumber(ARGV[5]), tonumber(ARGV[6])
local now = now_ms()
local alive = 0
if mode == 'hello' then
  local old = redis.call('HGET', P .. ':inc', node)
  if old and old ~= I then
    retire(old)
  end
  redis.call('HSET', P .. ':inc', node, I)
  redis.call('ZADD', P .. ':nodes', now, I)
  alive = 1
elseif mode == 'beat' then
  if redis.call('ZSCORE', P .. ':nodes', I) then
    redis.call('ZADD', P .. ':nodes', now, I)
    alive = 1
  end
  for _, dead in ipairs(redis.call('ZRANGEBYSCORE', P .. ':nodes', '-inf', '(' .. (now - timeout))) do
    retire(dead)
  end
elseif mode == 'bye' then
  retire(I)
end
return { alive, reap(budget) }
