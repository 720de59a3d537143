"""The sans-I/O core: signature and challenge checks, payload normalisation and ids.

Nothing in this package does I/O (no sockets, files, clock or environment): bytes,
headers, a query and a clock value go in; events or a typed error come out.
tests/unit/test_core_purity.py enforces it.
"""
