#!lua name=shval1
--[[
src/remote.lua — the server-side half of Redis segments (src/remote_*.c),
loaded with FUNCTION LOAD (Redis 7) and embedded in libshval at build time.
Not API.  Every change to a value goes through one of these functions, so
each is one atomic step on the server.

Keys of the segment "redis://host:port/P" (P is [A-Za-z0-9._-]{1,200}):
  P:seg      hash   magic, created, pid, next (the counter of serials and
                    lock tokens)
  P:dir      hash   value name -> serial
  P:v:NAME   hash   kind ("v" value, "l" lock entry), type (canonical),
                    mode, serial, ver (version), data (the value's exact
                    bytes in the C layout of the local format), guard
                    (shared lock's name, or ""), users (values under a lock
                    entry), holder (token of the lease holder while a
                    section is open; left behind by a dead owner), wq (the
                    id "client.seq" of the last shval1_write applied),
                    w (who wants its changes announced: "" nobody, "1" a
                    waiter of this value, "S" the segment is watched)
  P:l:NAME   string the lease: the holder's fencing token, expires (PX)
  P:ev       stream one entry per creation, removal, unlock (which also
                    announces the section it commits) and announced write
                    (n = name, w = c/r/u/w),
                    trimmed to about 256 entries.  Its last entry id is the
                    segment's version; every waiter (value, segment, lock)
                    blocks on it (XREAD) from the id it read with the
                    version, so no wake-up is lost.
  P:q:CLIENT string the sequence number of a write of the client whose
                    record ("wq" of the value) another client's write
                    overwrote (the highest such, 10 min): with "wq" it
                    tells a write resent after a lost connection that was
                    applied from one that was not; never applied twice.
  P:q:REQ    string the reply of another applied request (REQ = client id
                    and sequence number), 120 s, for the same purpose.

Announcing changes (the waiters' flag, as the local "waiters" bit): a plain
write appends to P:ev only if the value's "w" is set.  A waiter sets it to
"1" in the same call that reads the version and the stream's last id
(shval1_peek with the version it has seen); the next write clears it (in
the HSET it makes anyway) and appends.  Functions run one at a time, so a
write either comes before the peek (the waiter sees the new version) or
sees the flag (the waiter wakes): no wake-up is lost.  A segment watcher
(shval1_segpeek with arm: shval_seg_version, shval_seg_wait) marks the
segment "watched" for good and every value "S", and shval1_create gives
new values "S" from then on, so every change moves the segment's version,
as locally once watched.  ("S" copies P:seg's "watched" into each value so
that a write reads it with the HMGET it makes anyway.)  An unwatched write
is two redis.calls (HMGET, HSET): the XADD and the SET of the request
record cost about as much again (BENCHMARKS.md).

Numbers: versions, serials and tokens are counted with HINCRBY (exact
64-bit integers on the server); Lua compares them as strings or as doubles
below 2^53 only.  The value's bytes are never interpreted here: the client
computes every change with the local library's own code and the server
applies it only if the version it was computed from is still current
(compare-and-swap on the version), so integer widths, wrapping, range
errors and float rounding are exactly those of local values.
]]

local MAGIC = 'shval-redis 1'
-- The library's revision: a client whose copy differs loads its own
-- (FUNCTION LOAD REPLACE).  Change it with every change of this file.
local REV = '14'

local function key(p, kind, name)
	if name then
		return p .. ':' .. kind .. ':' .. name
	end
	return p .. ':' .. kind
end

local function lastid(k)
	local r = redis.call('XREVRANGE', k, '+', '-', 'COUNT', 1)
	if #r == 0 then
		return '0-0'
	end
	return r[1][1]
end

-- A change of NAME (or its unlock): wake the waiters.
local function changed(p, name, what)
	redis.call('XADD', p .. ':ev', 'MAXLEN', '~', '256', '*', 'n', name,
		'w', what)
end

-- Decimal sequence numbers: a < b.
local function seq_less(a, b)
	if #a ~= #b then
		return #a < #b
	end
	return a < b
end

-- A write by client me overwrites the value's record wq ("client.seq") of
-- another client's applied write: keep that write's number in the other
-- client's P:q:CLIENT (the highest one), so that its resend after a lost
-- connection is still recognised.  One SET ... GET; a second SET only if
-- an older number met a newer one.
local function keep(p, wq, me)
	if not wq or wq == '' then
		return
	end
	local dot = string.find(wq, '.', 1, true)
	if not dot then
		return
	end
	local c = string.sub(wq, 1, dot - 1)
	if c == me then
		return
	end
	local s, k = string.sub(wq, dot + 1), p .. ':q:' .. c
	local old = redis.call('SET', k, s, 'PX', 600000, 'GET')
	if old and seq_less(s, old) then
		redis.call('SET', k, old, 'PX', 600000)
	end
end

-- Requests that change something carry an id; the reply of an applied one
-- is kept for 120 s (a retry after a lost connection gets it again).
local function once(p, req, fn)
	local qk = nil
	if req ~= '' then
		qk = key(p, 'q', req)
		local q = redis.call('GET', qk)
		if q then
			return cjson.decode(q)
		end
	end
	local r = fn()
	if qk and r[1] == 'OK' then
		redis.call('SET', qk, cjson.encode(r), 'PX', 120000)
	end
	return r
end

-- A function of (P, req, ...) that changes something: fn(p, a) runs once
-- per request id (see once).
local function requested(fn)
	return function(_, a)
		local p = a[1]
		return once(p, a[2], function()
			return fn(p, a)
		end)
	end
end

-- The reply to a request that finds the lease l held by someone else:
-- the stream's last id (to wait from) and the lease's time to live.
local function busy(p, l)
	return { 'BUSY', lastid(p .. ':ev'), redis.call('PTTL', l) }
end

local function seg_check(p)
	local t = redis.call('TYPE', key(p, 'seg'))['ok']
	if t == 'none' then
		return 'NOSEG'
	end
	if t ~= 'hash' or redis.call('HGET', key(p, 'seg'), 'magic') ~= MAGIC then
		return 'FOREIGN'
	end
	return nil
end

-- segopen(P, create, excl, now, pid)
local function f_segopen(_, a)
	local p = a[1]
	local e = seg_check(p)
	if e == 'FOREIGN' then
		return { 'FOREIGN' }
	end
	if e == nil then
		if a[3] == '1' then
			return { 'EXISTS' }
		end
		return { 'OK', '0' }
	end
	if a[2] ~= '1' then
		return { 'NOSEG' }
	end
	redis.call('HSET', key(p, 'seg'), 'magic', MAGIC, 'created', a[4],
		'pid', a[5], 'next', 0)
	return { 'OK', '1' }
end

-- create(P, req, name, kind, type, mode, data, guard, guard_serial)
local f_create = requested(function(p, a)
	local name = a[3]
	local e = seg_check(p)
	if e then
		return { e }
	end
	local h = key(p, 'v', name)
	local t = redis.call('TYPE', h)['ok']
	if t ~= 'none' then
		if t ~= 'hash' then
			return { 'FOREIGNKEY', t }
		end
		return { 'EXISTS' }
	end
	local g = a[8]
	if g ~= '' then
		local gk = key(p, 'v', g)
		if redis.call('HGET', gk, 'serial') ~= a[9] or
		    redis.call('HGET', gk, 'kind') ~= 'l' then
			return { 'NOGUARD' }
		end
		redis.call('HINCRBY', gk, 'users', 1)
	end
	local sk = key(p, 'seg')
	local serial = redis.call('HINCRBY', sk, 'next', 1)
	local w = ''
	if redis.call('HGET', sk, 'watched') == '1' then
		w = 'S'
	end
	redis.call('HSET', h, 'kind', a[4], 'type', a[5], 'mode', a[6],
		'serial', serial, 'ver', 1, 'data', a[7], 'guard', g,
		'users', 0, 'holder', '', 'w', w)
	redis.call('HSET', key(p, 'dir'), name, serial)
	changed(p, name, 'c')
	return { 'OK', tostring(serial) }
end)

-- remove(P, req, name, force)
local f_remove = requested(function(p, a)
	local name = a[3]
	local h = key(p, 'v', name)
	if redis.call('EXISTS', h) == 0 then
		return { 'NOTFOUND' }
	end
	local r = redis.call('HMGET', h, 'users', 'guard')
	if tonumber(r[1] or '0') > 0 then
		return { 'INUSE', r[1] }
	end
	local lk = name
	if r[2] and r[2] ~= '' then
		lk = r[2]
	end
	local l = key(p, 'l', lk)
	if a[4] ~= '1' and redis.call('EXISTS', l) == 1 then
		return busy(p, l)
	end
	if r[2] and r[2] ~= '' then
		redis.call('HINCRBY', key(p, 'v', r[2]), 'users', -1)
	end
	redis.call('DEL', h, key(p, 'l', name))
	redis.call('HDEL', key(p, 'dir'), name)
	changed(p, name, 'r')
	return { 'OK' }
end)

-- write(P, client, seq, name, serial, expver, newver, data, lock, resent
-- [, prev[, strict]]): store data as version newver if the version is still
-- expver (and, with prev not "", the last write of the value was the
-- request prev) and no one else holds the lease of lock ("" for raw and
-- atomic values); "wq" records the request ("client.seq").  expver "*": a
-- write of every byte, which depends on no earlier state: stored as the
-- next version whatever the current one (decimal below 2^53, as Lua's
-- numbers; versions count changes from 1).  With strict = "1", a lock
-- whose dead owner left a section (its "holder" set, no lease) is not
-- recovered here: DEAD, nothing applied (the client then takes the lock,
-- which reports the death).  The hot path, kept lean (every
-- redis.call costs about as much as the network): no reply record, and
-- uncontended and unwatched just HMGET and HSET (a value's own lock's
-- holder comes with the HMGET).  A client sends one request at a time, so
-- a resent request (resent = "1", after a lost connection) was applied if
-- the value's wq is still its own or, once another client overwrote that,
-- if P:q:CLIENT (keep) holds its number.
local function f_write(_, a)
	local p, name = a[1], a[4]
	local h = p .. ':v:' .. name
	local r = redis.call('HMGET', h, 'serial', 'ver', 'wq', 'w', 'holder')
	if r[1] ~= a[5] then
		return { 'STALE' }
	end
	-- a batch's second and later change of one value (src/remote_batch.c,
	-- shval__r_batch_run): applied only right after the client's previous
	-- one (a[11] = its id "client.seq"), else refused as changed, so the
	-- batch's changes of one value keep their order
	if a[11] and a[11] ~= '' and r[3] ~= a[11] then
		return { 'CHANGED', r[2], redis.call('HGET', h, 'data') }
	end
	local me = a[2] .. '.' .. a[3]
	if a[10] == '1' and (r[3] == me or
	    redis.call('GET', p .. ':q:' .. a[2]) == a[3]) then
		return { 'OK', '' } -- applied before the connection broke
	end
	local lk, dead = a[9], false
	if lk ~= '' then
		local l = p .. ':l:' .. lk
		if redis.call('EXISTS', l) == 1 then
			return busy(p, l)
		end
		local holder = r[5]
		if lk ~= name then
			holder = redis.call('HGET', p .. ':v:' .. lk, 'holder')
		end
		-- a dead owner's lease expired in a section
		dead = holder and holder ~= ''
		if dead and a[12] == '1' then
			return { 'DEAD' }
		end
	end
	local nv = a[7]
	if a[6] == '*' then
		nv = string.format('%.0f', tonumber(r[2]) + 1)
	elseif r[2] ~= a[6] then
		return { 'CHANGED', r[2], redis.call('HGET', h, 'data') }
	end
	if dead then
		-- this write recovers (the next shval_lock no longer reports it)
		redis.call('HSET', p .. ':v:' .. lk, 'holder', '')
	end
	-- take the waiters' flag ("1"; they are woken below) in the HSET
	-- itself; the common write carries no extra field
	local w = r[4]
	if w == '1' then
		redis.call('HSET', h, 'data', a[8], 'ver', nv, 'wq', me,
			'w', '')
	else
		redis.call('HSET', h, 'data', a[8], 'ver', nv, 'wq', me)
	end
	keep(p, r[3], a[2])
	if w == '1' or w == 'S' then
		changed(p, name, 'w')
	end
	return { 'OK', nv }
end

-- lock(P, req, lock, serial, lease_ms[, want]): OK, the token, "1" if a
-- dead owner's section was dropped, the lock entry's version (of a value
-- under its own lock: the version its section's commit raises by one) and,
-- with want = "1" (the lock is the value's own), the value's committed
-- bytes: the section's first read needs no fetch (no other change of the
-- value can land while the lease is held).  The bytes are not part of the
-- request's record (once: JSON, and 120 s of a value's bytes): a resent
-- lock that was applied reads them again.
local lock_data -- the bytes f_lock_req read, for f_lock
local f_lock_req = requested(function(p, a)
	local lk = a[3]
	local h = key(p, 'v', lk)
	local r
	if a[6] == '1' then
		r = redis.call('HMGET', h, 'serial', 'holder', 'ver', 'data')
	else
		r = redis.call('HMGET', h, 'serial', 'holder', 'ver')
	end
	if r[1] ~= a[4] then
		return { 'STALE' }
	end
	local l = key(p, 'l', lk)
	if redis.call('EXISTS', l) == 1 then
		return busy(p, l)
	end
	local tok = tostring(redis.call('HINCRBY', key(p, 'seg'), 'next', 1))
	redis.call('SET', l, tok, 'PX', a[5])
	local dead = '0'
	if r[2] and r[2] ~= '' then
		dead = '1'
	end
	redis.call('HSET', h, 'holder', tok)
	lock_data = r[4]
	return { 'OK', tok, dead, r[3] or '' }
end)
local function f_lock(k, a)
	lock_data = nil
	local r = f_lock_req(k, a)
	if r[1] == 'OK' and a[6] == '1' then
		r[5] = lock_data or
		    redis.call('HGET', key(a[1], 'v', a[3]), 'data') or ''
	end
	return r
end

-- renew(P, lock, token, lease_ms)
local function f_renew(_, a)
	local l = key(a[1], 'l', a[2])
	if redis.call('GET', l) ~= a[3] then
		return 0
	end
	redis.call('PEXPIRE', l, a[4])
	return 1
end

-- commit(P, req, lock, token, n, name1, serial1, data1, ...): all the
-- section's staged values at once, if the lease is still the caller's;
-- then release the lease.
local f_commit = requested(function(p, a)
	local lk, tok, n = a[3], a[4], tonumber(a[5])
	local l = key(p, 'l', lk)
	if redis.call('GET', l) ~= tok then
		return { 'LOST' }
	end
	for i = 0, n - 1 do
		local name, serial = a[6 + 3 * i], a[7 + 3 * i]
		if redis.call('HGET', key(p, 'v', name), 'serial') ~= serial then
			return { 'STALE', name }
		end
	end
	for i = 0, n - 1 do
		local name, data = a[6 + 3 * i], a[8 + 3 * i]
		local h = key(p, 'v', name)
		redis.call('HSET', h, 'data', data)
		redis.call('HINCRBY', h, 'ver', 1)
	end
	-- one entry, the unlock's below, announces the whole section: every
	-- waiter wakes on any entry and peeks again (no entry per value)
	redis.call('DEL', l)
	if redis.call('EXISTS', key(p, 'v', lk)) == 1 then
		redis.call('HSET', key(p, 'v', lk), 'holder', '')
	end
	changed(p, lk, 'u')
	return { 'OK' }
end)

-- peek(P, name, serial[, seen]): the value's version and its stream's last
-- id; with seen (a waiter about to block, whose version is seen) the value's
-- next write is announced ("w" set to "1", unless the segment is watched)
-- if the version is still seen.
local function f_peek(_, a)
	local p = a[1]
	local h = key(p, 'v', a[2])
	local r = redis.call('HMGET', h, 'serial', 'ver', 'w')
	if r[1] ~= a[3] then
		return { 'STALE' }
	end
	if a[4] == r[2] and r[3] ~= '1' and r[3] ~= 'S' then
		redis.call('HSET', h, 'w', '1')
	end
	return { 'OK', r[2], lastid(p .. ':ev') }
end

-- segpeek(P[, arm]): the segment's version and its stream's last id; with
-- arm = "1" (shval_seg_version, shval_seg_wait) the segment is watched from
-- then on: every value's changes are announced ("w" = "S", and so for the
-- values created later), so that its version moves on every change.
local function f_segpeek(_, a)
	local p = a[1]
	local e = seg_check(p)
	if e then
		return { e }
	end
	local sk = key(p, 'seg')
	if a[2] == '1' and redis.call('HGET', sk, 'watched') ~= '1' then
		redis.call('HSET', sk, 'watched', '1')
		for _, name in ipairs(redis.call('HKEYS', key(p, 'dir'))) do
			redis.call('HSET', key(p, 'v', name), 'w', 'S')
		end
	end
	return { 'OK', lastid(p .. ':ev') }
end

redis.register_function('shval1_segopen', f_segopen)
redis.register_function('shval1_create', f_create)
redis.register_function('shval1_remove', f_remove)
redis.register_function('shval1_write', f_write)
redis.register_function('shval1_lock', f_lock)
redis.register_function('shval1_renew', f_renew)
redis.register_function('shval1_commit', f_commit)
redis.register_function { function_name = 'shval1_rev',
	callback = function() return REV end, flags = { 'no-writes' } }
redis.register_function('shval1_peek', f_peek)
redis.register_function('shval1_segpeek', f_segpeek)
