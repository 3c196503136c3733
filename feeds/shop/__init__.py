"""The shop views: gift inboxes and sends (brand-partner campaigns), the order center and
the sales credited to posts and reposts. Writes go through the shop Lua scripts in
``feeds/lua`` on the same batch pipeline as the feeds; reads through :class:`ShopReads`."""
