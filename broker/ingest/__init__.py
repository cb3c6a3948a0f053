"""Floor 5, the ways in: authenticate a producer, read its format, append the events to the log.

Baton's own JSON, OpenLineage and CloudEvents all become `core.events.Event`s here.
"""
