"""Baton's state in Redis: the event log, the match state and the trigger records."""
