"""pytest glue of the baseline gate: the judge, writing at session end, xdist (options:
:mod:`.gate_options`).

Registered by ``plugin.pytest_configure`` as a plugin object. Heavy work (jsonschema,
statistics, file I/O) happens in :mod:`.baselines` and :mod:`.compare`, imported when
first needed so that start-up stays cheap.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Generator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from .errors import TokrateError, UsageError
from .gate_options import (
    MARKER_KEYS,
    apply,
    flag,
    ini_value,
    layers,
    marker_gate_layer,
    parse_env_name,
    parse_other_load,
)

if TYPE_CHECKING:
    from .baselines import Baseline
    from .compare import GateSettings
    from .loadprobe import LoadTrace
    from .result import Measurement
    from .session import TokrateSession
    from .verdict import Finding, JudgeContext

PLUGIN_NAME = "tokrate-baselines"
WORKER_KEY = "tokrate_baselines"


def _recorded_busy(run: Mapping[str, Any]) -> bool:
    """Whether a run was measured on a machine too busy to judge it (see ``busy_reason``)."""
    from .calibration import reference_rates
    from .loadprobe import BUSY_SHARE, WAIT_SHARE

    if reference_rates(run):
        return (run.get("wait_share") or 0) > WAIT_SHARE
    return (run.get("busy_share") or 0) > BUSY_SHARE


# -- the gate ---------------------------------------------------------------------------


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


class BaselineGate:
    """Compares each measurement with its baseline, or collects it under update mode."""

    def __init__(self, config: pytest.Config, session: TokrateSession) -> None:
        self.config = config
        self.session = session
        self.rootpath = Path(config.rootpath)
        raw_dir = config.getoption("tokrate_baseline_dir") or ini_value(
            config, "tokrate_baseline_dir"
        )
        self.root = self.rootpath / (raw_dir or "baselines")
        env = config.getoption("tokrate_baseline_env")
        if env is None and ini_value(config, "tokrate_baseline_env") is not None:
            env = parse_env_name(
                ini_value(config, "tokrate_baseline_env"), "ini tokrate_baseline_env"
            )
        self.env_override: str | None = env
        self.ini_layer, self.cli_layer = layers(config)
        busy = config.getoption("tokrate_other_load")
        if busy is None and ini_value(config, "tokrate_other_load") is not None:
            busy = parse_other_load(
                ini_value(config, "tokrate_other_load"), "ini tokrate_other_load"
            )
        from .loadprobe import BUSY_CORES

        self.other_load: float = BUSY_CORES if busy is None else float(busy)
        self.update = flag(config, "tokrate_update_baselines")
        self.force = flag(config, "tokrate_force_update")
        self.is_worker = hasattr(config, "workerinput")
        self.pending = Pending()
        self.loaded: dict[Path, Baseline | None] = {}
        self.load: dict[str, LoadTrace | None] = {}
        self.lines: list[str] = []
        self.errors: list[str] = []
        if self.update and not self.is_worker:
            self._check_update_allowed()

    # -- configuration checks ---------------------------------------------------------

    def _check_update_allowed(self) -> None:
        if os.environ.get("CI") and not self.force:
            raise UsageError(
                "--tokrate-update-baselines: refusing to write baselines because the CI "
                f"environment variable is set (CI={os.environ['CI']!r}): record baselines on "
                "a developer machine and commit them, or pass --tokrate-force-update."
            )
        probe = self.root
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
            raise UsageError(
                f"--tokrate-update-baselines: cannot write baselines to {self.root} "
                f"({probe} is not a writable directory): fix its permissions or choose "
                "another directory with --tokrate-baseline-dir."
            )

    def display(self, path: Path) -> str:
        try:
            return path.relative_to(self.rootpath).as_posix()
        except ValueError:
            return str(path)

    def env_for(self, backend: str | None) -> str:
        return self.env_override or backend or "default"

    # -- judging ----------------------------------------------------------------------

    def settings_for(self, marker: Mapping[str, Any], where: str) -> GateSettings:
        from .compare import GateSettings

        settings = apply(GateSettings(), self.ini_layer)
        if marker:
            settings = apply(settings, marker_gate_layer(marker, where))
        return apply(settings, self.cli_layer)

    def _baseline(self, path: Path) -> Baseline | None:
        if path not in self.loaded:
            from .baselines import load_if_exists

            self.loaded[path] = load_if_exists(path)
        return self.loaded[path]

    def judge(self, measurement: Measurement, context: JudgeContext) -> list[Finding]:
        from . import baselines
        from .gate import judge_run
        from .verdict import Finding

        test_id = measurement.test_id or context.test_id
        env = self.env_for(measurement.model.backend)
        path = baselines.baseline_path(self.root, test_id, env)
        fingerprint = baselines.measurement_environment(measurement)
        record = baselines.run_record(measurement)
        # Other processes' CPU use is only telling when the engine runs in this process.
        embedded = measurement.model.backend == "embedded"
        trace = self.load.get(context.test_id) if embedded else None
        threads = measurement.samples[0].extra.get("num_thread") if measurement.samples else None
        record["engine_threads"] = threads if isinstance(threads, int) else None
        if trace is not None:
            mean, share = trace.mean(), trace.share_over(self.other_load)
            record["foreign_cpu_cores"] = None if mean is None else round(mean, 3)
            record["busy_share"] = None if share is None else round(share, 3)
            wait = trace.wait_share
            record["wait_share"] = None if wait is None else round(wait, 3)
        else:
            record["foreign_cpu_cores"] = record["busy_share"] = record["wait_share"] = None
        key = baselines.run_key(measurement)
        where = self.display(path)
        if self.update:
            doc = self.pending.files.setdefault(
                f"{test_id}@{env}",
                {"test_id": test_id, "env": env, "fingerprint": fingerprint, "runs": {}},
            )
            doc["runs"][key] = record
            return [Finding("baseline-update", "info", f"tokrate: baseline queued: {where}")]
        settings = self.settings_for(context.marker, test_id)
        if settings.mode == "off":
            return []
        baseline = self._baseline(path)
        run = baseline.runs.get(key) if baseline is not None else None
        if baseline is not None and run is None:
            where = f"{where} (it has no run {key!r}, only {', '.join(map(repr, baseline.runs))})"
        return judge_run(
            test_id=test_id if key == "run 1" else f"{test_id} ({key})",
            where=where,
            baseline=run,
            baseline_fingerprint=baseline.fingerprint if baseline is not None else None,
            current=record,
            current_fingerprint=fingerprint,
            settings=settings,
            recorded_at=baseline.data.get("recorded_at") if baseline is not None else None,
            busy=self.busy_reason(record, run),
        )

    def busy_reason(
        self, record: Mapping[str, Any], baseline_run: Mapping[str, Any] | None
    ) -> str | None:
        """Why the speed figures cannot be trusted, or ``None`` (see :mod:`.loadprobe`).

        Judged relative to the machine reference (both runs recorded it), a neighbour that
        slows the machine slows the reference too; what still spoils a comparison is this
        process being kept off the CPU, so the guard is its own run-queue wait. Otherwise
        it is the other processes' CPU use: the share of time over the limit is computed
        when a run is measured, with the limit of that session, so a baseline keeps the
        verdict of the session that recorded it.
        """
        from .calibration import reference_rates
        from .loadprobe import BUSY_SHARE, WAIT_SHARE

        if self.other_load == float("inf"):  # --tokrate-other-load=off
            return None
        runs = ((record, "while it ran"), (baseline_run, "while the baseline was recorded"))
        if baseline_run is not None and reference_rates(record) and reference_rates(baseline_run):
            for run, when in runs:
                wait = (run or {}).get("wait_share")
                if wait is not None and wait > WAIT_SHARE:
                    return (
                        f"this process waited for a CPU {wait:.0%} of the time {when} (other "
                        f"processes kept it off the cores; at most {WAIT_SHARE:.0%} is judged)"
                        + ("" if run is record else "; record it again on a quieter machine")
                    )
            return None
        for run, when in runs:
            share = (run or {}).get("busy_share")
            if share is None or share <= BUSY_SHARE:
                continue
            return (
                f"other processes used more than {self.other_load:g} CPU cores "
                f"(--tokrate-other-load) during {share:.0%} of the time {when}"
                + ("" if run is record else "; record it again on a quiet machine")
            )
        return None

    # -- hooks ------------------------------------------------------------------------

    @pytest.hookimpl(wrapper=True, trylast=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Generator[None, None, None]:
        """Innermost around the test body: how busy the machine was while it measured
        (the judges run after this, in ``plugin.pytest_runtest_call``)."""
        ours = type(item).__module__.startswith("pytest_tokrate.")  # YAML suite cases
        if not ours and "tokrate" not in getattr(item, "fixturenames", ()):
            return (yield)
        from .loadprobe import LoadSampler

        sampler = LoadSampler()
        sampler.start()
        try:
            return (yield)
        finally:
            self.load[item.nodeid] = sampler.stop()

    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        if any("tokrate" in getattr(item, "fixturenames", ()) for item in items):
            from .fixtures import EXTRA_MARKER_KEYS

            EXTRA_MARKER_KEYS.update(MARKER_KEYS)

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:
            self.pending.collect_errors += 1

    def pytest_deselected(self, items: list[pytest.Item]) -> None:
        self.pending.deselected += len(items)
        self.pending.known_ids.update(item.nodeid for item in items)

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        self.pending.known_ids.update(item.nodeid for item in session.items)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if self.update and report.failed:
            self.pending.failed.add(report.nodeid)

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if not self.update:
            return
        workeroutput = getattr(self.config, "workeroutput", None)
        if workeroutput is not None:
            workeroutput[WORKER_KEY] = self.pending.to_json()
            return
        try:
            self.write(session, int(exitstatus))
        except TokrateError as exc:
            self.errors.append(str(exc))
        if self.errors and session.exitstatus in (
            pytest.ExitCode.OK,
            pytest.ExitCode.NO_TESTS_COLLECTED,
        ):
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not (self.lines or self.errors):
            return
        terminalreporter.write_sep("=", "tokrate: baselines")
        for line in self.lines:
            terminalreporter.write_line(line)
        for error in self.errors:
            terminalreporter.write_line(f"ERROR: {error}", red=True)

    # -- writing ----------------------------------------------------------------------

    def write(self, session: pytest.Session, exitstatus: int) -> None:
        from . import baselines

        pending = self.pending
        docs = [d for d in pending.files.values() if d["test_id"] not in pending.failed]
        skipped = sorted({d["test_id"] for d in pending.files.values()} & pending.failed)
        written: list[str] = []
        lock = baselines.DirectoryLock(
            self.root, timeout_s=baselines.LOCK_TIMEOUT_S, on_wait=self._say_waiting
        )
        with lock:
            if lock.waited_s:
                self.lines.append(
                    f"waited {lock.waited_s:.1f} s for another process updating the baselines "
                    f"in {self.display(self.root)}/, then wrote after it"
                )
            # Every write happens under this lock, so temporary files seen now were left
            # by an update that was killed between writing and renaming.
            leftovers = baselines.leftover_temp_files(self.root)
            for leftover in leftovers:
                with contextlib.suppress(OSError):
                    leftover.unlink()
            if leftovers:
                self.lines.append(
                    f"removed {len(leftovers)} temporary file(s) left by an interrupted update"
                )
            for doc in sorted(docs, key=lambda d: (d["test_id"], d["env"])):
                path = baselines.baseline_path(self.root, doc["test_id"], doc["env"])
                data = baselines.build(doc["test_id"], doc["env"], doc["fingerprint"], doc["runs"])
                try:
                    baselines.save(path, data, replace_invalid=self.force)
                except TokrateError as exc:
                    self.errors.append(str(exc))
                    continue
                written.append(self.display(path))
            self.lines.append(
                f"wrote {len(written)} baseline file(s) to {self.display(self.root)}/"
                + ("" if written else " (no tokrate test passed)")
            )
            self.lines.extend(f"  {w}" for w in written)
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
            self._unused(session, exitstatus)

    def _say_waiting(self) -> None:
        """Said at once, not in the summary: the run seems to hang while it waits."""
        from .baselines import LOCK_TIMEOUT_S

        message = (
            f"tokrate: another process is updating the baselines in {self.display(self.root)}/: "
            f"waiting for it to finish (up to {LOCK_TIMEOUT_S:g} s) ..."
        )
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line("")  # ends the progress line ("... [100%]") first
            reporter.write_line(message)
        else:  # pragma: no cover - -p no:terminal
            import sys

            print(message, file=sys.stderr, flush=True)

    def _relevant_envs(self) -> tuple[set[str], set[str]]:
        models = self.session.config.models
        return {self.env_for(m.backend) for m in models}, {m.name for m in models}

    def _partial_reason(self, session: pytest.Session, exitstatus: int) -> str | None:
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
        module = (self.rootpath / test_id.partition("::")[0]).resolve()
        for arg in self.config.args:
            target = (Path(self.config.invocation_params.dir) / str(arg)).resolve()
            if module == target or target in module.parents:
                return True
        return False

    def _unused(self, session: pytest.Session, exitstatus: int) -> None:
        from . import baselines

        envs, models = self._relevant_envs()
        known = self.pending.known_ids
        modules = {k.partition("::")[0] for k in known}
        found, invalid = baselines.scan(self.root)
        for error in invalid:
            self.lines.append(f"invalid baseline left as it is: {error}")
        unused: list[Baseline] = []
        for b in found:
            if b.environment not in envs or b.model not in models or b.test_id in known:
                continue
            module = b.test_id.partition("::")[0]
            if module in modules or not (self.rootpath / module).exists():
                unused.append(b)
        if not unused:
            return
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
            self.lines.extend(f"  {self.display(b.path)} ({b.test_id})" for b in removable)
        if kept:
            why = reason or "their tests lie outside the paths given to pytest"
            self.lines.append(
                f"{len(kept)} baseline(s) no test used, kept because {why}; run the whole "
                "suite with --tokrate-update-baselines to remove them:"
            )
            self.lines.extend(f"  {self.display(b.path)} ({b.test_id})" for b in kept)


class XdistHooks:
    """Controller side under pytest-xdist: workers send what they measured; only the
    controller writes. Registered only when xdist is active."""

    def __init__(self, gate: BaselineGate) -> None:
        self.gate = gate

    def pytest_testnodedown(self, node: Any, error: object) -> None:
        raw = getattr(node, "workeroutput", {}).get(WORKER_KEY)
        if raw:
            self.gate.pending.merge_json(raw)


def configure(config: pytest.Config, session: TokrateSession) -> BaselineGate:
    """Create the gate, register its hooks and its judge."""
    gate = BaselineGate(config, session)
    config.pluginmanager.register(gate, PLUGIN_NAME)
    if config.pluginmanager.hasplugin("xdist") and not gate.is_worker:
        config.pluginmanager.register(XdistHooks(gate), PLUGIN_NAME + "-xdist")
    session.judges.append(gate.judge)
    return gate


__all__ = ["BaselineGate", "configure"]
