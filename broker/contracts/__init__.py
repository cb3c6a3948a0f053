"""Floor 2, what a contract is: the model, its files and YAML loader, the checker, the graph.

Load errors are `file:line: message`. Imports only `broker.core`.
"""
