-- Applies a batch of one node's membership changes, in order.
-- ARGV: P, I, check ('1': only if I is live, else return 0 so the node restores; '0': restoring),
-- then ops: 'o' id ns user | 'c' id | 'j' id room | 'l' id room | 'u' id user  (user '' = none).
local I = ARGV[2]
if ARGV[3] == '1' and not redis.call('ZSCORE', P .. ':nodes', I) then
  return 0
end
local i = 4
while i <= #ARGV do
  local op = ARGV[i]
  if op == 'o' then
    open(I, ARGV[i + 1], ARGV[i + 2], ARGV[i + 3])
    i = i + 4
  elseif op == 'c' then
    close(I, ARGV[i + 1])
    i = i + 2
  elseif op == 'j' or op == 'l' or op == 'u' then
    local id = ARGV[i + 1]
    local ns = redis.call('HGET', ikey(I, 'cn'), id)
    if ns then
      if op == 'j' then
        add_room(I, id, ns, ARGV[i + 2])
      elseif op == 'l' then
        remove_room(I, id, ns, ARGV[i + 2])
      else
        set_user(I, id, ns, ARGV[i + 2])
      end
    end
    i = i + 3
  else
    return redis.error_reply('ferrosocket: unknown presence op ' .. tostring(op))
  end
end
return 1
