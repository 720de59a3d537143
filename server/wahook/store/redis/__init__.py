"""The Redis Streams event log (the scale-out backend): ``RedisEventLog`` in ``log``, its
client-side group commit in ``append``, the Lua scripts in ``lua/`` (loaded by
``scripts``, which also describes the key layout)."""

from wahook.store.redis.log import RedisEventLog, RedisMetrics

__all__ = ["RedisEventLog", "RedisMetrics"]
