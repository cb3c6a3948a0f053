"""Floor 6, the contract lifecycle an operator steers: reload, changes, pause, explain, audit.

What a new contract set does to the live state (compared in `changes`, read and evaluated
again in `live`, applied in `apply`, previewed in `preview`), why a partition has not
fired, and who did what.
"""
