-- delete_post.lua: mark a post deleted (readers hide it at once, later reposts of it are
-- skipped) and forget it in every recent list. Returns the users whose followers' feeds
-- must then be cleaned with unpush.lua: the author first, then every reposter.
-- ARGV 8..: post_id, author_id, ts
local post, author, ts = ARGV[8], ARGV[9], ARGV[10]

local record = key('post', post)
redis.call('HSETNX', record, 'a', author)
redis.call('HSETNX', record, 'del', ts)
redis.call('ZREM', key('recent', author), post)
local reposters = redis.call('ZRANGE', key('reposters', post), 0, -1)
for _, reposter in ipairs(reposters) do
  redis.call('ZREM', key('recent_reposts', reposter), post)
end
table.insert(reposters, 1, author)
return reposters
