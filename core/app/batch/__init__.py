"""Many clips: ``matanyone batch`` and ``batch()`` (see docs/batch.md).

plan (a folder or manifest into checked jobs) -> record (resume records) -> an executor (local
worker processes, or Ray tasks; each clip runs app.jobs.run_clip in worker.execute_clip) ->
report (per clip status, OUTDIR/batch-report.json); runner ties them together.
"""

from .report import BatchReport, ClipReport
from .runner import BatchObserver, run_batch

__all__ = ["BatchObserver", "BatchReport", "ClipReport", "run_batch"]
