"""Floor 3, matching: which contract partitions an event feeds, and what each needs.

Pure (imports `core` and `contracts`): the matcher decides, `state` records.
"""
