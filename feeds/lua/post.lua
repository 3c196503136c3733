-- post.lua: the origin step of a post, on the post's slot: record the post (unless it was
-- deleted) and settle the orders waiting for it. The store then adds it to its author's
-- recent list (the author's slot) and delivers it to the followers (feeds/fanout.py,
-- deliver.lua).
-- ARGV 8..: post_id, author_id, ts, visibility, text, media_url
-- Returns 'skip' for a deleted post, else 'ok'.
local post, author, ts = ARGV[8], ARGV[9], ARGV[10]

if is_deleted(post) then return 'skip' end
local record = key('post', post)
redis.call('HSET', record, 'a', author, 'ts', ts, 'vis', ARGV[11])
if ARGV[12] ~= '' then redis.call('HSET', record, 'text', ARGV[12]) end
if ARGV[13] ~= '' then redis.call('HSET', record, 'media', ARGV[13]) end
settle_awaiting('post', post, author)
return 'ok'
