"""Floor 5, the dimension of time: deadlines that alert, backfills, and replay of the log.

Beside `ingest` and `dispatch`, not above them: none of the three imports another.
"""
