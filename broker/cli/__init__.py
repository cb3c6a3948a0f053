"""Floor 10, `baton`: the command line, one module per command family.

An entry point: `main.main` is the `baton` script.
"""
