"""Floor 1, the ground: what an event, a partition, a filter and a template are, and the settings.

Pure: no I/O, no Redis, no HTTP; it imports nothing else of Baton.
"""
