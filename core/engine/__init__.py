"""The engine: what every backend is written against, and nothing else.

The module declaration (``spec``), the ``Module``/``Backend`` protocol, the per-frame state
machine and its clip driver, padding, precision names and the typed errors. It imports only
numpy and itself, so a backend author can depend on it without pulling in media, plugins or the
application (tests/test_layers.py enforces the arrow).
"""
