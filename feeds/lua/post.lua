-- post.lua: the origin step of a post, on the post's slot: record the post (unless it was
-- deleted) and return the orders waiting for it (awaiting_post:{post}), which the store
-- hands to the order steps (feeds/shop/order_steps.py). The store then adds it to its
-- author's recent list (the author's slot) and delivers it to the followers
-- (feeds/fanout.py, deliver.lua).
-- ARGV 8..: post_id, author_id, ts, visibility, text, media_url
-- Returns {'skip'} for a deleted post, else {'ok', waiting order...}.
local post, author, ts = ARGV[8], ARGV[9], ARGV[10]

if is_deleted(post) then return { 'skip' } end
local record = key('post', post)
redis.call('HSET', record, 'a', author, 'ts', ts, 'vis', ARGV[11])
if ARGV[12] ~= '' then redis.call('HSET', record, 'text', ARGV[12]) end
if ARGV[13] ~= '' then redis.call('HSET', record, 'media', ARGV[13]) end
local out = { 'ok' }
for _, order in ipairs(redis.call('SMEMBERS', key('awaiting_post', post))) do
  out[#out + 1] = order
end
return out
