"""``python -m matanyone_engine.core.cli``: the same as the ``matanyone`` console script."""

from .entry import main

main()
