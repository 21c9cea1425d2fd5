"""The Lua script that adds a batch of blocks to the stream, atomically, in order.

Why a script and not a pipeline of ``XADD``: Redis runs a script as one step, so the checks and
the adds cannot interleave with another publisher's, and the batch stops at the first block that
must not be added (a pipeline would go on adding later blocks after a failed one and leave a
hole that nobody could fill, since Redis refuses IDs below the top).

First, when the publisher knows its chain (``ARGV[2]``, a genesis hash), the script compares it
with the genesis recorded in the stream's meta hash (``KEYS[2]``, field ``genesis``): another
chain's stream refuses the whole batch (``"chain <recorded genesis>"``); a stream without one
records ours (the first publisher claims it). So two chains can never meet in one stream, not
even when one is far ahead of the other (its blocks would otherwise go in "after a gap").

Per block the script:

1. looks at the stream's top entry; an entry without a ``hash`` field means the stream is not
   blockfeed's and nothing is added;
2. when the top is at or above the block's number, the block is already published (by this or
   another publisher, or before a restart): it checks that the entry with the same ID has the
   same hash (``0``), or notes that the entry was trimmed or deleted (``-1``); a different hash
   stops the batch (two chains in one stream);
3. when the top is the block just before, the block's ``parent_hash`` must equal the top's hash,
   else the batch stops; a top further below is a gap, added anyway and reported (``2``);
4. ``XADD <stream> MAXLEN ~ <n> <number>-0 ...``. Redis itself refuses an ID that is not above
   the stream's last ID ("equal or smaller than the target stream top item"): that means
   "already published" (``-1``), e.g. when the entries above were deleted.
"""

from __future__ import annotations

ADDED = 1
ADDED_AFTER_GAP = 2
ALREADY_THERE = 0
ALREADY_GONE = -1
"""The block's number is at or below the stream's last ID but its entry was trimmed or deleted."""

ADD_BLOCKS_LUA = r"""
local function get_field(flat, name)
  for k = 1, #flat, 2 do
    if flat[k] == name then return flat[k + 1] end
  end
  return nil
end

local stream, maxlen = KEYS[1], ARGV[1]
local meta, genesis = KEYS[2], ARGV[2]
if genesis ~= '' then
  local recorded = redis.call('HGET', meta, 'genesis')
  if recorded and recorded ~= genesis then
    return {'chain ' .. recorded}
  end
  if not recorded then
    redis.call('HSET', meta, 'genesis', genesis)
  end
end
local out = {}
local i = 3
while i <= #ARGV do
  local id, number = ARGV[i], tonumber(ARGV[i + 1])
  local hash, parent = ARGV[i + 2], ARGV[i + 3]
  local first_field = i + 5
  local last_field = first_field + tonumber(ARGV[i + 4]) - 1
  i = last_field + 1

  local top = redis.call('XREVRANGE', stream, '+', '-', 'COUNT', 1)[1]
  local top_number = nil
  if top then
    if not get_field(top[2], 'hash') then
      out[#out + 1] = 'foreign ' .. top[1]
      return out
    end
    top_number = tonumber(string.match(top[1], '^(%d+)%-'))
  end

  if top_number and top_number >= number then
    local same = redis.call('XRANGE', stream, id, id)[1]
    if not same then
      out[#out + 1] = -1
    elseif get_field(same[2], 'hash') == hash then
      out[#out + 1] = 0
    else
      out[#out + 1] = 'mismatch ' .. tostring(get_field(same[2], 'hash'))
      return out
    end
  else
    local code = 1
    if top_number then
      if top_number == number - 1 then
        local top_hash = get_field(top[2], 'hash')
        if top_hash ~= parent then
          out[#out + 1] = 'parent ' .. tostring(top_hash)
          return out
        end
      else
        code = 2
      end
    end
    local args = {'XADD', stream}
    if maxlen ~= '0' then
      args[#args + 1] = 'MAXLEN'
      args[#args + 1] = '~'
      args[#args + 1] = maxlen
    end
    args[#args + 1] = id
    for k = first_field, last_field do args[#args + 1] = ARGV[k] end
    local reply = redis.pcall(unpack(args))
    if type(reply) == 'table' and reply.err then
      if string.find(reply.err, 'equal or smaller', 1, true) then
        out[#out + 1] = -1
      else
        out[#out + 1] = 'error ' .. reply.err
        return out
      end
    else
      out[#out + 1] = code
    end
  end
end
return out
"""
"""``KEYS[1]``: the stream; ``KEYS[2]``: its meta hash. ``ARGV[1]``: approximate MAXLEN (``"0"``:
no cap); ``ARGV[2]``: the publisher's genesis hash (``""``: unknown, not checked). Then per block:
ID, number, hash, parent hash, field-value count, fields and values. Returns one code per block
handled, in order, and, when it stopped early, one last string: ``"chain <recorded genesis>"``,
``"foreign <top id>"``, ``"mismatch <hash in stream>"``, ``"parent <hash of the block before>"``
or ``"error <text>"``."""


def meta_key(stream: str) -> str:
    """The hash next to ``stream`` that records which chain it carries (field ``genesis``)."""
    return f"{stream}:meta"
