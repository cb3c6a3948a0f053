"""Matching: which contract partitions an event feeds, and what each needs. Pure."""
