"""The Lua scripts of the Redis Streams event log, read from ``lua/`` once at import: each
write (and each read that must see one consistent state) is one script, so it is atomic
across every replica sharing the Redis, and one round trip (EVALSHA; redis-py loads a
script once and again after a restart flushed it). A script is ``lua/common.lua``, the
tables generated here (the filter columns, the status order), the helpers it uses and
its own file, whose first lines say its ARGV and reply.

Keys, all under one prefix ``P`` (``WAHOOK_REDIS_PREFIX``), built inside the scripts from
``ARGV[1]``, so the log needs a standalone Redis (with replicas or Sentinel), not Redis
Cluster:

- ``P:head``: the sequence counter (INCRBY); it survives pruning, so a sequence is never
  handed out twice.
- ``P:events``: the stream. Entry ``0-<sequence>`` holds ``d`` (the serialised Event,
  sequence unset), ``i`` (its id), ``k`` (dedupe key), the filter columns' fields
  (store.filters.COLUMNS: ``t`` EventType, ``m`` Meta's message type, on message and echo
  events only, ``p`` phone_number_id, ``w`` waba_id), ``r`` (received time, Unix
  seconds) and, on status events, ``s`` (the outbound message id). Stream ids order like
  sequences, so GetEvent / ListEvents by sequence are XRANGEs.
- ``P:ids``: hash event id -> sequence (dedupe: an event's id is a hash of its dedupe
  key, and a hit compares the stored ``k``, as the SQLite log does).
- ``P:groups``: set of group names; ``P:group:<name>``: hash ``filter`` (store.filters'
  canonical text), ``created_at``, ``leases`` (the lease counter, started at the creation
  time in milliseconds), ``max_attempts``, ``expire_after``, ``last_active``. The stream's
  consumer group of the same name holds the position (last-delivered-id) and the pending
  entries (PEL: owner, delivery count = attempt).
- ``P:lease:<name>``: hash sequence -> the lease of its current delivery; an ack, nack or
  deadline change acts only when the lease it names is this one. ``P:err:<name>``: hash
  sequence -> why its last attempt failed (a nack's error, a released stream).
- ``P:dead:<name>``: hash sequence -> JSON [attempts, dead_at, error], the dead letters.
  They stay in the PEL, owned by the consumer ``wahook:dead-letters`` (a subscriber's
  consumer name always has a ``#``), because only an entry still pending can be made
  pending again (XCLAIM ... RETRYCOUNT 0) when a dead letter is redelivered.
- ``P:due:<name>``: zset of the group's pending sequences (members zero-padded to 20
  digits so equal scores order by sequence) scored by the time each is due again: its ack
  deadline, a nack's redeliver_at, or the release time. Why not XAUTOCLAIM's idle time:
  the contract's clock is the caller's ``now``, every fetch has its own ack deadline and
  a nack sets any delay; an idle time since the last delivery can express none of that.
  Entries nacked or released move (XCLAIM JUSTID, no delivery counted) to the consumer
  ``""``, so that a stream's release never cuts a nack's delay short, and a released
  consumer is deleted from the group (XGROUP DELCONSUMER) instead of piling up.
- ``P:st:<message id>``: the forward-only status record (``s`` state, ``t`` time, ``r``
  recipient, ``e`` serialised errors); ``P:sh:<message id>``: its history, hash sequence
  -> JSON [state, occurred_at, applied, event_id], pruned with its events.
"""

from __future__ import annotations

from importlib.resources import files

from wahook.core.status_order import advances
from wahook.store import filters
from wahook.v1 import status_pb2

_LUA = files("wahook.store.redis") / "lua"


def _advances_table() -> str:
    """core.status_order as a Lua table ``["cur:new"] = true``: the forward-only rule has
    one source, ported by enumerating every pair of known states."""
    states = list(status_pb2.DeliveryState.values())
    pairs = [f'["{cur}:{new}"]=true' for cur in states for new in states if advances(cur, new)]
    return "local ADVANCES = {" + ",".join(pairs) + "}\n"


def _script(name: str, *helpers: str, generated: str = "") -> str:
    """``lua/common.lua``, ``generated``, the helper files and ``lua/<name>.lua``."""
    parts = ["common", *helpers, name]
    texts = [(_LUA / f"{part}.lua").read_text(encoding="utf-8") for part in parts]
    return texts[0] + generated + "".join(texts[1:])


# Per event, the APPEND script's arguments: 9 and one per filter column (see append.lua).
APPEND_ARGS_PER_EVENT = 9 + len(filters.COLUMNS)

APPEND = _script("append", generated=filters.lua_columns() + _advances_table())
GET = _script("get")
CREATE_GROUP = _script("create_group")
GROUP_INFO = _script("group_info")
FETCH = _script("fetch", "filter", generated=filters.lua_columns())
RELEASE = _script("release")
PRUNE = _script("prune")
# Leases, dead letters and a group's lifecycle.
ACK_LEASES = _script("ack_leases", "leased")
NACK_LEASES = _script("nack_leases", "leased")
MODIFY_DEADLINES = _script("modify_deadlines", "leased")
DEAD_LETTER = _script("dead_letter", "leased")
DELETE_GROUP = _script("delete_group")
SEEK_GROUP = _script("seek_group")
TOUCH_GROUPS = _script("touch_groups")
EXPIRE_GROUPS = _script("expire_groups")
LIST_DEAD_LETTERS = _script("list_dead_letters")
REDELIVER_DEAD_LETTERS = _script("redeliver_dead_letters", "chosen")
DISCARD_DEAD_LETTERS = _script("discard_dead_letters", "chosen")
