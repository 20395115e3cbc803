"""The gate's update mode (``--tokrate-update-baselines``): the baseline documents queued
during the run, sent by xdist workers to the controller, written at session end under
the directory lock, and the baselines no test uses pruned.

Glue driven by :class:`~pytest_tokrate.plugin.gate.BaselineGate`; the files themselves
are built, validated and saved by :mod:`pytest_tokrate.gate.store`.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_tokrate.errors import TokrateError, UsageError
from pytest_tokrate.plugin.gate_options import GateOptions
from pytest_tokrate.plugin.session import running_in_ci

if TYPE_CHECKING:
    from pytest_tokrate.backends.models import ModelSpec
    from pytest_tokrate.gate.store import Baseline

#: Key of a worker's pending documents in ``config.workeroutput`` (xdist).
WORKER_KEY = "tokrate_baselines"


def check_update_allowed(options: GateOptions) -> None:
    """Refuse (a usage error) to write baselines in CI unless forced, or where the
    baseline directory cannot be written."""
    if running_in_ci() and not options.force:
        raise UsageError(
            "--tokrate-update-baselines: refusing to write baselines because the CI "
            f"environment variable is set (CI={os.environ['CI']!r}): record baselines on "
            "a developer machine and commit them, or pass --tokrate-force-update."
        )
    from pytest_tokrate.gate.files import file_in_the_way, not_a_directory

    blocker = file_in_the_way(options.root / "x")  # `baselines` itself, or a parent
    if blocker is not None:
        where = f"write baselines to {options.root}"
        raise UsageError(f"--tokrate-update-baselines: {not_a_directory(blocker, where)}")
    probe = options.root
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise UsageError(
            f"--tokrate-update-baselines: cannot write baselines to {options.root} "
            f"({probe} is not a writable directory): fix its permissions or choose "
            "another directory with --tokrate-baseline-dir."
        )


def _recorded_busy(run: Mapping[str, Any]) -> bool:
    """Whether a run was measured on a machine too busy to judge it (see ``busy_reason``)."""
    from pytest_tokrate.machine.calibration import reference_rates
    from pytest_tokrate.machine.load import BUSY_SHARE, WAIT_SHARE

    if reference_rates(run):
        return (run.get("wait_share") or 0) > WAIT_SHARE
    return (run.get("busy_share") or 0) > BUSY_SHARE


@dataclass
class Pending:
    """Baseline documents collected for writing (filled by the judge, merged from workers)."""

    files: dict[str, dict[str, Any]] = field(default_factory=dict)  # test@env -> document
    known_ids: set[str] = field(default_factory=set)
    deselected: int = 0
    collect_errors: int = 0
    failed: set[str] = field(default_factory=set)

    def to_json(self) -> str:
        return json.dumps(
            {
                "files": self.files,
                "known_ids": sorted(self.known_ids),
                "deselected": self.deselected,
                "collect_errors": self.collect_errors,
                "failed": sorted(self.failed),
            }
        )

    def merge_json(self, text: str) -> None:
        data = json.loads(text)
        self.files.update(data["files"])
        self.known_ids.update(data["known_ids"])
        self.deselected = max(self.deselected, int(data["deselected"]))
        self.collect_errors += int(data["collect_errors"])
        self.failed.update(data["failed"])

    def queue(
        self,
        test_id: str,
        env: str,
        fingerprint: Mapping[str, Any],
        key: str,
        record: Any,
        model: str | None = None,
    ) -> None:
        """Add one run of a test to its baseline document (``model``: its id in the
        test id, so that another model's run finds this baseline)."""
        doc = self.files.setdefault(
            f"{test_id}@{env}",
            {"test_id": test_id, "env": env, "fingerprint": fingerprint, "runs": {}},
        )
        if model is not None:
            doc["model"] = model
        doc["runs"][key] = record


class XdistHooks:
    """Controller side under pytest-xdist: workers send what they measured; only the
    controller writes. Registered only when xdist is active."""

    def __init__(self, pending: Pending) -> None:
        self.pending = pending

    def pytest_testnodedown(self, node: Any, error: object) -> None:
        raw = getattr(node, "workeroutput", {}).get(WORKER_KEY)
        if raw:
            self.pending.merge_json(raw)


class BaselineWriter:
    """Writes the pending documents at session end and says what it did: ``lines`` for
    the terminal summary, ``errors`` that fail the run."""

    def __init__(
        self, config: pytest.Config, options: GateOptions, models: tuple[ModelSpec, ...]
    ) -> None:
        self.config = config
        self.options = options
        self.models = models
        self.pending = Pending()
        self.lines: list[str] = []
        self.errors: list[str] = []
        #: The files this update writes, and those written so far (said after a Ctrl-C).
        self.queued: list[str] = []
        self.written: list[str] = []
        self.pruning = False

    def finish(self, session: pytest.Session, exitstatus: int) -> None:
        """A worker hands its documents to the controller; the controller writes them,
        and an error turns a passing exit status into "tests failed"."""
        workeroutput = getattr(self.config, "workeroutput", None)
        if workeroutput is not None:
            workeroutput[WORKER_KEY] = self.pending.to_json()
            return
        try:
            self.write(session, exitstatus)
        except TokrateError as exc:
            self.errors.append(str(exc))
        except KeyboardInterrupt:
            # pytest turns a Ctrl-C into a summary only while tests run; here it would end
            # in a traceback that does not say which files were written.
            self._say_interrupted()
            session.exitstatus = pytest.ExitCode.INTERRUPTED
            return
        if self.errors and session.exitstatus in (
            pytest.ExitCode.OK,
            pytest.ExitCode.NO_TESTS_COLLECTED,
        ):
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def write(self, session: pytest.Session, exitstatus: int) -> None:
        from pytest_tokrate.gate import store as baselines

        pending, display = self.pending, self.options.display
        docs = [d for d in pending.files.values() if d["test_id"] not in pending.failed]
        skipped = sorted({d["test_id"] for d in pending.files.values()} & pending.failed)
        root = self.options.root
        self.queued = sorted(
            display(baselines.baseline_path(root, d["test_id"], d["env"])) for d in docs
        )
        lock = baselines.DirectoryLock(
            root, timeout_s=baselines.LOCK_TIMEOUT_S, on_wait=self._say_waiting
        )
        with lock:
            if lock.waited_s:
                self.lines.append(
                    f"waited {lock.waited_s:.1f} s for another process updating the baselines "
                    f"in {display(root)}/, then wrote after it"
                )
            self._remove_leftovers()
            self._write_docs(docs)
            busy = sorted(
                d["test_id"] for d in docs if any(map(_recorded_busy, d["runs"].values()))
            )
            if busy:
                self.lines.append(
                    f"warning: other processes kept the CPU busy while {len(busy)} of these were "
                    "recorded (see --tokrate-other-load); their speed figures are suspect, "
                    "record them again on a quiet machine: " + ", ".join(busy)
                )
            if skipped:
                self.lines.append(
                    f"not written, the test failed: {', '.join(skipped)} (fix it, then update)"
                )
            self.pruning = True
            self._unused(session, exitstatus)

    def _remove_leftovers(self) -> None:
        from pytest_tokrate.gate.store import leftover_temp_files

        # Every write happens under the lock, so temporary files seen now were left by an
        # update that was killed between writing and renaming.
        leftovers = leftover_temp_files(self.options.root)
        for leftover in leftovers:
            with contextlib.suppress(OSError):
                leftover.unlink()
        if leftovers:
            self.lines.append(
                f"removed {len(leftovers)} temporary file(s) left by an interrupted update"
            )

    def _write_docs(self, docs: list[dict[str, Any]]) -> None:
        from pytest_tokrate.gate import store as baselines

        root, display = self.options.root, self.options.display
        written = self.written
        for doc in sorted(docs, key=lambda d: (d["test_id"], d["env"])):
            path = baselines.baseline_path(root, doc["test_id"], doc["env"])
            data = baselines.build(
                doc["test_id"], doc["env"], doc["fingerprint"], doc["runs"], self._models(doc)
            )
            with _whole_file() as interrupted:
                try:
                    baselines.save(path, data, replace_invalid=self.options.force)
                except TokrateError as exc:
                    self.errors.append(str(exc))
                else:
                    written.append(display(path))
            if interrupted:
                raise KeyboardInterrupt
        self.lines.append(
            f"wrote {len(written)} baseline file(s) to {display(root)}/"
            + ("" if written else " (no tokrate test passed)")
        )
        self.lines.extend(f"  {w}" for w in written)

    def _say_interrupted(self) -> None:
        """What a Ctrl-C in the write phase left: each file is whole, old or new."""
        if self.pruning:
            self.lines.append(
                f"interrupted (Ctrl-C) while removing unused baselines, after writing all "
                f"{len(self.written)} file(s): run the update again to finish"
            )
            return
        rest = [p for p in self.queued if p not in set(self.written)]
        self.lines.append(
            f"interrupted (Ctrl-C) while writing baselines: wrote {len(self.written)} of "
            f"{len(self.queued)} file(s), each one whole; no baseline was removed"
        )
        self.lines.extend(f"  written: {p}" for p in self.written)
        if rest:
            self.lines.append(f"not written ({len(rest)}), run the update again to write the rest:")
            self.lines.extend(f"  {p}" for p in rest)

    def _models(self, doc: Mapping[str, Any]) -> dict[str, Any]:
        """Which model a document is of, the test without it, and the project's
        reference model (the first listed): how runs on other models find it."""
        from pytest_tokrate.gate.siblings import without_model

        model = doc.get("model")
        return {
            "model_id": model,
            "test_key": without_model(doc["test_id"], model),
            "reference_model": self.models[0].name if self.models else None,
        }

    def _say_waiting(self) -> None:
        """Said at once, not in the summary: the run seems to hang while it waits."""
        from pytest_tokrate.gate.store import LOCK_TIMEOUT_S

        message = (
            "tokrate: another process is updating the baselines in "
            f"{self.options.display(self.options.root)}/: "
            f"waiting for it to finish (up to {LOCK_TIMEOUT_S:g} s) ..."
        )
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line("")  # ends the progress line ("... [100%]") first
            reporter.write_line(message)
        else:  # pragma: no cover - -p no:terminal
            import sys

            print(message, file=sys.stderr, flush=True)

    def _partial_reason(self, session: pytest.Session, exitstatus: int) -> str | None:
        """Why this run did not see every test, so unused baselines must be kept."""
        pending = self.pending
        if pending.deselected:
            return f"{pending.deselected} test(s) were deselected (-k, -m, --lf, ...)"
        if pending.collect_errors:
            return f"{pending.collect_errors} collection error(s)"
        if session.shouldstop or session.shouldfail or exitstatus == pytest.ExitCode.INTERRUPTED:
            return "the run stopped early"
        if any("::" in str(arg) for arg in self.config.args):
            return "single tests were selected on the command line"
        return None

    def _under_args(self, test_id: str) -> bool:
        module = (self.options.rootpath / test_id.partition("::")[0]).resolve()
        for arg in self.config.args:
            target = (Path(self.config.invocation_params.dir) / str(arg)).resolve()
            if module == target or target in module.parents:
                return True
        return False

    def _find_unused(self) -> tuple[list[Baseline], list[Baseline]]:
        """Baselines of this session's environments and models that no collected test
        uses: those of modules that ran (this project's, safe to prune), and those whose
        module is not in this project (a baseline directory shared by several projects
        holds them too: never pruned, only listed)."""
        from pytest_tokrate.gate import store as baselines

        envs = {self.options.env_for(m.backend) for m in self.models}
        models = {m.name for m in self.models}
        known = self.pending.known_ids
        modules = {k.partition("::")[0] for k in known}
        found, invalid = baselines.scan(self.options.root)
        for error in invalid:
            self.lines.append(f"invalid baseline left as it is: {error}")
        unused: list[Baseline] = []
        foreign: list[Baseline] = []
        for b in found:
            if b.environment not in envs or b.model not in models or b.test_id in known:
                continue
            module = b.test_id.partition("::")[0]
            if module in modules:
                unused.append(b)
            elif not (self.options.rootpath / module).exists():
                foreign.append(b)
        return unused, foreign

    def _unused(self, session: pytest.Session, exitstatus: int) -> None:
        unused, foreign = self._find_unused()
        if foreign:
            self.lines.append(
                f"{len(foreign)} baseline(s) of test files not in this project, kept (a shared "
                "baseline directory holds other projects' baselines too; delete them by hand "
                "if a test file of this project was removed):"
            )
            self.lines.extend(f"  {self.options.display(b.path)} ({b.test_id})" for b in foreign)
        if not unused:
            return
        display = self.options.display
        reason = self._partial_reason(session, exitstatus)
        removable = [b for b in unused if reason is None and self._under_args(b.test_id)]
        for b in removable:
            try:
                b.path.unlink()
            except OSError as exc:
                self.errors.append(f"cannot remove unused baseline {b.path}: {exc.strerror}")
        kept = [b for b in unused if b not in removable]
        if removable:
            self.lines.append(f"removed {len(removable)} baseline(s) no test uses:")
            self.lines.extend(f"  {display(b.path)} ({b.test_id})" for b in removable)
        if kept:
            # This run did not see their tests, so it cannot tell whether they still exist:
            # the files are only listed, never called unused.
            why = reason or "their tests lie outside the paths given to pytest"
            self.lines.append(
                f"{len(kept)} other baseline(s) left as they are, their tests not run here "
                f"({why}); an update of the whole suite removes those no test uses:"
            )
            self.lines.extend(f"  {display(b.path)} ({b.test_id})" for b in kept)


@contextlib.contextmanager
def _whole_file() -> Iterator[list[int]]:
    """Hold a Ctrl-C that arrives while one baseline file is written until the file is
    done; the list it yields is non-empty when one arrived. The write is atomic anyway
    (a temporary file renamed), so this only makes the summary exact: a file is either
    counted written, or left as it was."""
    caught: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield caught  # signals only ever reach the main thread
        return
    previous = signal.signal(signal.SIGINT, lambda signum, _frame: caught.append(signum))
    try:
        yield caught
    finally:
        # None: a handler installed outside Python; Python's own is the closest match.
        signal.signal(signal.SIGINT, previous or signal.default_int_handler)


__all__ = ["WORKER_KEY", "BaselineWriter", "Pending", "XdistHooks", "check_update_allowed"]
