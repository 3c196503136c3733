-- delete_post.lua: the origin step of a deletion, on the post's slot: mark the post
-- deleted (readers hide it at once, later reposts of it are skipped). Returns the users
-- whose followers' feeds must then be cleaned (deliver.lua, 'unpush'): the author first,
-- then every reposter. The store also takes the post out of their recent lists (their
-- slots) and, once every feed is clean, drops the post's reposters and comments.
-- ARGV 8..: post_id, author_id, ts
local post, author, ts = ARGV[8], ARGV[9], ARGV[10]

local record = key('post', post)
redis.call('HSETNX', record, 'a', author)
redis.call('HSETNX', record, 'del', ts)
local reposters = redis.call('ZRANGE', key('reposters', post), 0, -1)
table.insert(reposters, 1, author)
return reposters
