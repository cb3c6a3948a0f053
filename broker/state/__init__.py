"""Floor 4, state: the event log, the match state and the trigger records, in Redis.

The ports are the protocols; the Redis stores and their Lua scripts implement them.
"""
