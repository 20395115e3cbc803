"""Baselines cannot be lost: SIGKILL during an update, and concurrent updaters.

The runs measure through the Ollama stand-in in replay mode (real SmolLM2 tokens, recorded
once, streamed with no delay), so each inner pytest run is dominated by start-up and by
the baseline writes themselves, and many kills fit in the time budget.

Every baseline carries the generation of the run that wrote it (``seed=GEN``, kept in
the stored test definition), so after each kill every file can be checked to be either
the old file, byte for byte, or a whole new one from this run, valid against the schema.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from standin import EngineHost, OllamaStandin

from pytest_tokrate.gate import store as baselines

#: Kills per CI run (raise it with TOKRATE_KILLS for a longer soak).
KILLS = int(os.environ.get("TOKRATE_KILLS", "30"))
FILES = 24
RANDOM = random.Random(20251123)  # fixed: the same kill schedule shape on every run
MANY = f"""
import os
import pytest

GEN = int(os.environ["TOKRATE_GEN"])

@pytest.mark.parametrize("i", range({FILES}))
def test_speed(tokrate, i):
    tokrate.run(f"Say {{i}}.", seed=GEN)
"""


@pytest.fixture(scope="module")
def replay_server() -> Iterator[OllamaStandin]:
    engine = EngineHost(replay=True, replay_tokens=16)
    server = OllamaStandin(engine).start()
    yield server
    server.stop()
    engine.close()


def pytest_args(server: OllamaStandin, *extra: str) -> list[str]:
    return [
        "-q", "-p", "no:cacheprovider", *server.plugin_args(),
        "--tokrate-rounds=1", "--tokrate-warmup=0", "--tokrate-num-predict=4",
        "--tokrate-update-baselines", *extra,
    ]  # fmt: skip


def command(server: OllamaStandin, *extra: str) -> list[str]:
    """A subprocess that loads only our plugin (see :func:`environment`)."""
    plugin = ["-p", "pytest_tokrate.plugin"]
    return [sys.executable, "-u", "-m", "pytest", *plugin, *pytest_args(server, *extra)]


def environment(gen: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "PYTEST_ADDOPTS")}
    # Only our plugin: start-up is most of each run, and nothing else is needed.
    return {**env, "TOKRATE_GEN": str(gen), "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}


class Run:
    """An inner pytest run whose output is watched for the end of the last test."""

    def __init__(self, cmd: list[str], cwd: Path, env: dict[str, str]) -> None:
        self.started = time.monotonic()
        self.tests_done = threading.Event()
        self.text: list[str] = []
        self.proc = subprocess.Popen(
            cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.text.append(line)
            if "[100%]" in line:  # the last test is done; the session end (writes) follows
                self.tests_done.set()

    def output(self) -> str:
        return "".join(self.text)


Snapshot = dict[str, tuple[bytes, int]]


def check_files(root: Path, before: Snapshot, gen: int) -> tuple[Snapshot, set[str]]:
    """Every file is the old one (same bytes) or a whole new one of generation ``gen``."""
    found = {p.relative_to(root).as_posix(): p for p in baselines.iter_files(root)}
    assert set(found) == set(before), "a baseline file was lost, or an unknown one appeared"
    after: Snapshot = {}
    kinds: set[str] = set()
    for rel, path in found.items():
        raw = path.read_bytes()
        doc = baselines.load(path)  # complete JSON, valid against the schema
        assert baselines.baseline_path(root, doc.test_id, doc.environment) == path
        (seed,) = {run["definition"]["options"]["seed"] for run in doc.runs.values()}
        old_raw, old_gen = before[rel]
        if seed == old_gen:
            assert raw == old_raw, f"{rel}: generation {seed} but not the old bytes"
            kinds.add("old")
        else:
            assert seed == gen, f"{rel}: generation {seed}, neither {old_gen} nor {gen}"
            kinds.add("new")
        after[rel] = (raw, seed)
    return after, kinds


def inodes(root: Path) -> dict[str, int]:
    """Name -> inode of every entry in the baseline directories (a rename changes it)."""
    out = {}
    for directory in (root, *(p for p in root.iterdir() if p.is_dir())):
        with os.scandir(directory) as entries:
            for entry in entries:
                out[entry.path] = entry.inode()
    return out


def wait_for_first_write(root: Path, run: Run, before: dict[str, int]) -> bool:
    """Poll until the run renames its first file over a baseline (or leaves a temporary
    one); False when the run ended first."""
    while run.proc.poll() is None:
        try:
            if inodes(root) != before:
                return True
        except OSError:  # an entry vanished between listing and stat: a rename
            return True
        time.sleep(0.001)
    return False


def test_sigkill_during_updates_leaves_every_baseline_old_or_new(
    pytester: pytest.Pytester, replay_server: OllamaStandin
) -> None:
    project = pytester.path
    pytester.makepyfile(test_many=MANY)
    root = project / "baselines"
    # Generation 0 creates the files (and warms the replay); generation 1 measures how
    # long a run takes, how long after its last test it ends, and how long its writes take.
    for gen in (0, 1):
        run = Run(command(replay_server), project, environment(gen))
        assert run.tests_done.wait(180), run.output()
        t_tests = time.monotonic() - run.started
        run.proc.wait(timeout=180)
        t_total = time.monotonic() - run.started
        assert run.proc.returncode == 0, run.output()
    mtimes = [p.stat().st_mtime for p in baselines.iter_files(root)]
    write_span = max(max(mtimes) - min(mtimes), 0.02)
    tail = max(t_total - t_tests, 0.2)
    snapshot: Snapshot = {
        p.relative_to(root).as_posix(): (p.read_bytes(), 1) for p in baselines.iter_files(root)
    }
    assert len(snapshot) == FILES

    kills = mid_update = finished = 0
    for gen in range(2, KILLS + 2):
        before = inodes(root)
        run = Run(command(replay_server), project, environment(gen))
        aim = RANDOM.random()
        if aim < 0.6:  # while the files are being written
            if wait_for_first_write(root, run, before):
                time.sleep(RANDOM.uniform(0.0, write_span))
        elif aim < 0.8:  # in the session end: writing, pruning, reporting
            run.tests_done.wait(120)
            time.sleep(RANDOM.uniform(0.0, tail))
        else:  # anywhere
            time.sleep(RANDOM.uniform(0.0, t_total))
        if run.proc.poll() is None:
            run.proc.kill()  # SIGKILL: no handler, no cleanup
            kills += 1
        else:
            finished += 1
        run.proc.wait(timeout=60)
        snapshot, kinds = check_files(root, snapshot, gen)
        if kinds == {"old", "new"} or baselines.leftover_temp_files(root):
            mid_update += 1

    # A whole update afterwards cleans what the kills left and rewrites every file.
    gen = KILLS + 2
    leftovers = len(baselines.leftover_temp_files(root))
    run = Run(command(replay_server), project, environment(gen))
    run.proc.wait(timeout=180)
    assert run.proc.returncode == 0, run.output()
    assert f"wrote {FILES} baseline file(s)" in run.output()
    if leftovers:
        assert f"removed {leftovers} temporary file(s) left by an interrupted update" in (
            run.output()
        )
    assert baselines.leftover_temp_files(root) == []
    snapshot, kinds = check_files(root, snapshot, gen)
    assert kinds == {"new"}
    print(
        f"\ntokrate kill test: {kills} SIGKILLs survived ({mid_update} of them in the middle "
        f"of writing the baselines, {leftovers} temporary files left and then cleaned), "
        f"{finished} runs finished before their kill; {FILES} baseline files checked after "
        f"each run ({(KILLS + 1) * FILES} checks), 0 lost, 0 corrupted (write span "
        f"{write_span * 1000:.0f} ms)"
    )
    assert kills >= KILLS * 0.7, "too few runs were still alive when killed"
    assert mid_update >= 1, "no kill landed while the baselines were being written"


# -- concurrent updaters -----------------------------------------------------------------------

SHARED = """
import os
import pytest

GEN = int(os.environ["TOKRATE_GEN"])

@pytest.mark.parametrize("i", range(10))
def test_shared(tokrate, i):
    tokrate.run(f"Shared {i}.", seed=GEN)
"""
OWN = """
import os
import pytest

GEN = int(os.environ["TOKRATE_GEN"])

@pytest.mark.parametrize("i", range(5))
def test_own(tokrate, i):
    tokrate.run(f"Own {i}.", seed=GEN)
"""


def test_two_runs_with_xdist_workers_update_the_same_baselines(
    pytester: pytest.Pytester, replay_server: OllamaStandin
) -> None:
    """Two pytest runs, each with two xdist workers, update one baselines/ at once. The
    lock is held from outside until both are waiting for it, so both must say they wait;
    then they write one after the other: nothing lost, nothing interleaved."""
    project = pytester.path
    pytester.makepyfile(test_shared=SHARED, test_a=OWN, test_b=OWN)
    root = project / "baselines"
    runs = {}
    with baselines.DirectoryLock(root):
        for gen, own in ((1, "test_a.py"), (2, "test_b.py")):
            cmd = [*command(replay_server, "-p", "xdist", "-n", "2"), "test_shared.py", own]
            runs[gen] = Run(cmd, project, environment(gen))
        deadline = time.monotonic() + 180
        while not all("is updating the baselines" in r.output() for r in runs.values()):
            assert time.monotonic() < deadline, [r.output() for r in runs.values()]
            assert all(r.proc.poll() is None for r in runs.values()), [
                r.output() for r in runs.values()
            ]
            time.sleep(0.05)
    for run in runs.values():
        run.proc.wait(timeout=120)
        text = run.output()
        assert run.proc.returncode == 0, text
        assert "waiting for it to finish" in text and "wrote 15 baseline file(s)" in text
        assert "Traceback" not in text
    found = {p.relative_to(root).as_posix(): baselines.load(p) for p in baselines.iter_files(root)}
    assert len(found) == 20, sorted(found)  # 10 shared, 5 + 5 own: no update lost
    gens: dict[str, set[int]] = {}
    for rel, doc in found.items():
        (seed,) = {run["definition"]["options"]["seed"] for run in doc.runs.values()}
        gens.setdefault(rel.split("/")[0], set()).add(seed)
    assert gens["test_a"] == {1} and gens["test_b"] == {2}
    # Whoever wrote last wrote every shared file: the runs did not interleave.
    assert len(gens["test_shared"]) == 1, gens


def test_a_run_that_cannot_get_the_lock_refuses_cleanly(
    pytester: pytest.Pytester, replay_server: OllamaStandin, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(test_shared=SHARED)
    monkeypatch.setenv("TOKRATE_GEN", "7")
    monkeypatch.setattr(baselines, "LOCK_TIMEOUT_S", 0.5)
    root = pytester.path / "baselines"
    with baselines.DirectoryLock(root):
        result = pytester.runpytest(*pytest_args(replay_server))
    text = result.stdout.str() + result.stderr.str()
    assert result.ret == pytest.ExitCode.TESTS_FAILED, text
    result.stdout.fnmatch_lines(
        [
            "tokrate: another process is updating the baselines in baselines/: waiting for it "
            "to finish (up to 0.5 s) ...",
            "ERROR: another process has been updating the baselines in * for over 0.5 s: wait "
            "for it to finish, then run again.",
        ]
    )
    assert "Traceback" not in text
    assert list(baselines.iter_files(root)) == []  # nothing written without the lock


def test_an_update_removes_temporary_files_left_by_a_killed_one(
    pytester: pytest.Pytester, replay_server: OllamaStandin, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A kill between writing a temporary file and renaming it leaves the file behind
    (hidden, never loaded); the next update, holding the lock, removes it."""
    pytester.makepyfile(test_own=OWN)
    monkeypatch.setenv("TOKRATE_GEN", "3")
    leftover = pytester.path / "baselines" / "test_own" / ".test_own[x]@ollama.json.k1ll3d.tmp"
    leftover.parent.mkdir(parents=True)
    leftover.write_text('{"half": ', encoding="utf-8")
    assert baselines.leftover_temp_files(pytester.path / "baselines") == [leftover]
    result = pytester.runpytest(*pytest_args(replay_server))
    result.assert_outcomes(passed=5)
    result.stdout.fnmatch_lines(
        ["removed 1 temporary file(s) left by an interrupted update", "wrote 5 baseline file(s)*"]
    )
    assert not leftover.exists()
    assert len(list(baselines.iter_files(pytester.path / "baselines"))) == 5
