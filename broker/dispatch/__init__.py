"""Floor 5, dispatch: claimed triggers -> rendered requests -> targets, with retries.

Also `baton check --online`, which asks the same targets whether a trigger would work.
"""
