"""The Ray executor: each clip one Ray task, on a local Ray instance or an existing cluster.

Ray does the scheduling, the placement on nodes and the isolation: a task is its own worker
process, and a worker that dies (out of memory, a native crash) fails that task only
(``max_retries=0``: a clip that killed its worker would most likely kill the next one too).
A task asks for ``cpus_per_clip`` CPUs and ``gpus_per_clip`` GPUs; Ray sets CUDA_VISIBLE_DEVICES
for it, and the clip's backend uses as many threads as it was given CPUs.

Artifacts (ONNX / Core ML exports) need nothing from Ray: a task's backend asks the artifact
cache of the node it runs on (core.artifacts.cache, under $MATANYONE_CACHE or the user cache
folder), and that cache's per-key file lock makes the first task on a node build a set while the
others on that node wait for it and load the result, so each set is built once per node.

Without ``address`` the executor starts a local Ray instance sized for the batch and stops it at
the end; with one it joins that cluster (``ray://host:10001`` or ``auto``) and leaves it running.
Inputs and OUTDIR must then be at the same path on every node (a shared file system), and every
node needs matanyone-engine installed.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

from ...engine.errors import InputError
from .plan import ClipJob
from .worker import _one_line, execute_clip

INSTALL_HINT = "pip install 'matanyone-engine[ray]'"
#: How long cancelled tasks get to drop their staged outputs.
CANCEL_GRACE_S = 30.0

OnResult = Callable[[ClipJob, dict[str, Any]], None]


def require_ray() -> Any:
    """The ray module, or a one-line InputError saying how to install it."""
    try:
        import ray
    except ImportError:
        raise InputError(f"--executor ray needs Ray, which is not installed: {INSTALL_HINT}") from None
    return ray


class RayExecutor:
    name = "ray"

    def __init__(
        self,
        address: str | None = None,
        jobs: int | None = None,
        cpus_per_clip: float = 1.0,
        gpus_per_clip: float = 0.0,
    ):
        self.ray = require_ray()
        self.address = address
        self.cpus_per_clip = cpus_per_clip
        self.gpus_per_clip = gpus_per_clip
        if jobs is None:
            jobs = max(1, int((os.cpu_count() or 1) // max(cpus_per_clip, 1e-9)))
        self.jobs = jobs

    def describe(self) -> str:
        where = self.address or f"a local Ray instance ({self.jobs} clips at a time)"
        return f"ray on {where}, {self.cpus_per_clip:g} CPU / {self.gpus_per_clip:g} GPU per clip"

    def _start_ray(self) -> bool:
        """Connect or start Ray; True when this call started it (and must stop it)."""
        ray = self.ray
        if ray.is_initialized():
            return False
        if self.address:
            ray.init(address=self.address, log_to_driver=False)
        else:
            # CPUs sized for the batch; GPUs as Ray finds them
            ray.init(
                num_cpus=max(1, round(self.jobs * self.cpus_per_clip)), include_dashboard=False, log_to_driver=False
            )
        return True

    def _check_feasible(self) -> None:
        """A task asking for more than any node has would wait forever; say so instead."""
        have = self.ray.cluster_resources()
        for what, want in (("CPU", self.cpus_per_clip), ("GPU", self.gpus_per_clip)):
            if want > 0 and have.get(what, 0) < want:
                flag = f"--{what.lower()}s-per-clip"
                raise InputError(
                    f"{flag} {want:g} asks for more than this Ray cluster has ({have.get(what, 0):g} {what}); "
                    f"lower {flag} or add nodes with {what}s"
                )

    def run(self, jobs: Sequence[ClipJob], on_result: OnResult) -> None:
        """Submit every clip, report each as it ends; on KeyboardInterrupt cancel the rest (a
        running task gets a KeyboardInterrupt and drops its staged outputs), then re-raise."""
        ray = self.ray
        started = self._start_ray()
        refs: dict[Any, ClipJob] = {}
        try:
            self._check_feasible()
            task = ray.remote(num_cpus=self.cpus_per_clip, num_gpus=self.gpus_per_clip, max_retries=0)(execute_clip)
            for job in jobs:
                payload = {**job.to_json(), "options": dict(job.options)}
                if payload["options"].get("threads") is None:
                    payload["options"]["threads"] = max(1, int(self.cpus_per_clip))
                refs[task.remote(payload)] = job
            while refs:
                done, _ = ray.wait(list(refs), num_returns=1)
                for ref in done:
                    job = refs.pop(ref)
                    on_result(job, self._result(ref))
        except BaseException:
            self._cancel(list(refs))
            raise
        finally:
            if started:
                ray.shutdown()

    def _result(self, ref: Any) -> dict[str, Any]:
        try:
            return self.ray.get(ref)
        except self.ray.exceptions.RayError as exc:
            return {"status": "failed", "error": f"the Ray task failed: {_one_line(f'{type(exc).__name__}: {exc}')}"}

    def _cancel(self, refs: list[Any]) -> None:
        if not refs:
            return
        for ref in refs:
            try:
                self.ray.cancel(ref, force=False)
            except Exception:  # a task that ended meanwhile cannot be cancelled; nothing to do
                pass
        try:
            self.ray.wait(refs, num_returns=len(refs), timeout=CANCEL_GRACE_S)
        except Exception:  # the cluster went away; the tasks went with it
            pass
