"""The ``matanyone`` console script: signals handled from the first moment.

A Ctrl-C, SIGTERM or SIGHUP while the command tree is still being imported ends with one
``error:`` line and the signal's exit code (130, 143, 129) rather than a traceback; the command
itself (``main.main``) keeps handling them for the rest of the run.
"""

from __future__ import annotations

import sys

from ..app import interrupts


def main() -> None:
    try:
        with interrupts.signals_as_interrupts():
            from .main import main as run_cli

            run_cli()
    except KeyboardInterrupt as exc:
        sys.stderr.write(f"error: {interrupts.describe(exc)}\n")
        sys.exit(interrupts.exit_code(exc))
