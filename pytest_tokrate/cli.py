"""The ``tokrate`` console script: look after the baseline files without running tests.

::

    tokrate baselines list                 every baseline, one line each
    tokrate baselines show TEST            one test's baselines in full
    tokrate baselines diff [GIT-REV]       working tree against a commit (default HEAD)
    tokrate baselines prune [--dry-run]    remove baselines of tests that no longer exist

Exit codes (for scripts): 0 success; 1 ``diff`` found a regression, or ``prune --check``
found something to remove; 2 usage error or git failure; 3 a baseline file was invalid or
could not be read, written or removed (each named on stderr; ``prune`` removes none of
them); 4 ``show`` matched no baseline.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from pytest_tokrate.errors import BaselineError, TokrateError
from pytest_tokrate.gate.project import configured_dir, find_root, prune_plan
from pytest_tokrate.gate.store import (
    DEFAULT_DIR,
    Baseline,
    DirectoryLock,
    iter_files,
    leftover_temp_files,
    parse,
    read_text,
    remove_files,
    scan,
)

if TYPE_CHECKING:
    from pytest_tokrate.gate.rule import GateSettings

EXIT_OK = 0
EXIT_REGRESSION = 1
EXIT_USAGE = 2
EXIT_INVALID = 3
EXIT_NOT_FOUND = 4


class CliError(Exception):
    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.code = code


# -- where the baselines are -------------------------------------------------------------


def baseline_dir(args: argparse.Namespace) -> tuple[Path, Path]:
    root = Path(args.root).resolve() if args.root else find_root(Path.cwd().resolve())
    raw = args.dir or configured_dir(root) or DEFAULT_DIR
    directory = (root / raw).resolve()
    if directory.exists() and not directory.is_dir():
        where = f"the baseline directory {_rel(directory, root)} is a file, not a directory"
        raise CliError(f"{where}: move it away, or point --dir elsewhere.", EXIT_INVALID)
    return root, directory


def _rel(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


# -- list / show -------------------------------------------------------------------------


def _stored_median(run: dict[str, Any], figure: str, scale: float = 1.0) -> str:
    """The median a baseline run recorded for ``figure``, as table text."""
    summary = run["summaries"].get(figure) or {}
    value = summary.get("median")
    return "-" if value is None else f"{value * scale:.1f}"


def _report_invalid(errors: Sequence[TokrateError], err: TextIO) -> int:
    for error in errors:
        print(f"invalid: {error}", file=err)
    return EXIT_INVALID if errors else EXIT_OK


def _table(rows: list[list[str]], out: TextIO) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip(), file=out)


def cmd_list(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    root, directory = baseline_dir(args)
    found, invalid = scan(directory)
    if args.json:
        print(
            json.dumps([{"path": _rel(b.path, root), **b.data} for b in found], indent=2), file=out
        )
        return _report_invalid(invalid, err)
    rows = [
        ["test", "env", "model", "run", "rounds", "decode tok/s", "TTFT ms", "pass", "recorded"]
    ]
    for b in found:
        for label, run in b.runs.items():
            quality = run.get("quality")
            rows.append(
                [
                    b.test_id,
                    b.environment,
                    str(b.model),
                    label,
                    str(run["rounds"]),
                    _stored_median(run, "decode_tps"),
                    _stored_median(run, "ttft", 1000.0),
                    "-" if quality is None else f"{quality['passed']}/{quality['total']}",
                    str(b.data["recorded_at"]),
                ]
            )
    if len(rows) > 1:
        _table(rows, out)
    print(
        f"{len(found)} baseline file(s) in {_rel(directory, root)}/"
        + (f", {len(invalid)} invalid" if invalid else ""),
        file=out,
    )
    return _report_invalid(invalid, err)


def _flatten(data: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(data, dict) and data:
        out = []
        for key in sorted(data):
            out.extend(_flatten(data[key], f"{prefix}.{key}" if prefix else str(key)))
        return out
    return [(prefix, data)]


def show_lines(b: Baseline, root: Path) -> list[str]:
    from pytest_tokrate.gate.metrics import METRICS

    lines = [
        f"{b.test_id}  [{b.environment}]",
        f"  file: {_rel(b.path, root)}",
        f"  recorded: {b.data['recorded_at']}",
        "  fingerprint:",
    ]
    lines.extend(f"    {k}: {json.dumps(v)}" for k, v in _flatten(b.fingerprint))
    for label, run in b.runs.items():
        d = run["definition"]
        lines.append(
            f"  {label}: {run['rounds']} rounds ({run['warmup']} warm-up), definition "
            f"{d['hash']}, options {json.dumps(d['options'], sort_keys=True)}"
        )
        for figure, summary in run["summaries"].items():
            name, scale, unit, _ = METRICS.get(figure, (figure, 1.0, "", True))
            med = summary.get("median")
            low, high = (summary.get("median_ci95") or [None, None])[:2]
            if med is None:
                continue
            ci = (
                ""
                if low is None or high is None
                else f"  (95% CI {low * scale:.4g}..{high * scale:.4g})"
            )
            unit = f" ({unit.strip()})" if unit.strip() else ""
            lines.append(f"    {name}{unit}: median {med * scale:.4g}{ci}, n={summary['n']}")
        quality = run.get("quality")
        if quality is not None:
            lines.append(
                f"    pass rate: {quality['passed']}/{quality['total']} "
                f"({quality['pass_rate'] * 100:.0f}%)"
            )
    return lines


def cmd_show(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    root, directory = baseline_dir(args)
    found, invalid = scan(directory)
    wanted = args.test
    exact = [b for b in found if wanted in (b.test_id, _rel(b.path, root), str(b.path))]
    matches = exact or [b for b in found if wanted in b.test_id]
    if not matches:
        print(
            f"no baseline matches {wanted!r} in {_rel(directory, root)}/: "
            "`tokrate baselines list` shows the test ids.",
            file=err,
        )
        _report_invalid(invalid, err)
        return EXIT_NOT_FOUND
    for b in matches:
        if args.json:
            print(json.dumps(b.data, indent=2, sort_keys=True), file=out)
        else:
            print("\n".join(show_lines(b, root)), file=out)
    return _report_invalid(invalid, err)  # one of them may be the file asked for


# -- diff ---------------------------------------------------------------------------------


def _git(root: Path, *argv: str) -> str:
    try:
        proc = subprocess.run(
            ["git", "-C", str(root), *argv], capture_output=True, text=True, check=False
        )
    except OSError as exc:
        raise CliError(
            f"cannot run git ({exc.strerror}): install git, or compare by hand."
        ) from None
    if proc.returncode != 0:
        raise CliError(f"git {' '.join(argv)} failed: {proc.stderr.strip() or proc.returncode}")
    return proc.stdout


def _tracked_files(root: Path, directory: Path, rev: str) -> tuple[Path, set[str], set[str]]:
    """The repository's top, and the baseline files (relative to it) at ``rev`` and now."""
    top = Path(_git(root, "rev-parse", "--show-toplevel").strip()).resolve()
    _git(root, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
    rel_dir = _rel(directory, top)
    listed = _git(top, "ls-tree", "-r", "--name-only", rev, "--", rel_dir).splitlines()
    old_paths = {p for p in listed if p.endswith(".json") and not Path(p).name.startswith(".")}
    new_paths = {_rel(p, top) for p in iter_files(directory)}
    return top, old_paths, new_paths


def _diff_settings(args: argparse.Namespace) -> GateSettings:
    """The plugin's default gate settings, with the diff command's options applied."""
    from dataclasses import replace

    from pytest_tokrate.gate.parsers import parse_metrics, parse_min_tokens, parse_tolerance
    from pytest_tokrate.gate.rule import GateSettings

    settings = GateSettings()
    if args.tolerance:
        settings = settings.with_tolerance(parse_tolerance(args.tolerance, "--tolerance"))
    if args.metrics:
        settings = replace(settings, metrics=parse_metrics(args.metrics, "--metrics"))
    if args.min_decode_tokens:
        tokens = parse_min_tokens(args.min_decode_tokens, "--min-decode-tokens")
        settings = replace(settings, min_decode_tokens=tokens)
    return settings


def _print_runs(old: Baseline, new: Baseline, settings: GateSettings, out: TextIO) -> int:
    """Print each run of a changed file against its old version; the regressions found."""
    from pytest_tokrate.gate.judge import diff_runs, table

    regressions = 0
    for run in diff_runs(old, new, settings):
        if run.status != "compared":
            print(f"  {run.label}: {run.status}", file=out)
            continue
        note = "not comparable: " + "; ".join(map(str, run.changes)) if run.changes else ""
        print(f"  {run.label}{' (' + note + ')' if note else ''}:", file=out)
        if run.config:
            print("    configuration changed: " + "; ".join(map(str, run.config)), file=out)
        for line in table(run.comparisons, indent="    "):
            print(line, file=out)
        regressions += run.regressions
    return regressions


def cmd_diff(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    root, directory = baseline_dir(args)
    rev = args.rev
    top, old_paths, new_paths = _tracked_files(root, directory, rev)
    settings = _diff_settings(args)
    invalid: list[TokrateError] = []
    regressions = changed = 0
    for rel in sorted(old_paths | new_paths):
        if rel not in new_paths:
            print(f"removed: {rel}", file=out)
            continue
        try:
            new_text = read_text(top / rel)  # bounded: a FIFO or device is reported
            if rel not in old_paths:
                print(f"added: {rel}", file=out)
                continue
            old_text = _git(top, "show", f"{rev}:{rel}")
            if old_text == new_text:
                continue
            old = parse(old_text, f"{rel} at {rev}")
            new = parse(new_text, rel)
        except TokrateError as exc:
            invalid.append(exc)
            continue
        changed += 1
        print(f"changed: {rel}", file=out)
        regressions += _print_runs(old, new, settings, out)
    print(
        f"{changed} changed baseline file(s) against {rev}; {regressions} regression(s)",
        file=out,
    )
    return _report_invalid(invalid, err) or (EXIT_REGRESSION if regressions else EXIT_OK)


# -- prune --------------------------------------------------------------------------------


def cmd_prune(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    root, directory = baseline_dir(args)
    found, invalid = scan(directory)
    doomed, foreign = prune_plan(found, root, directory)
    if foreign:
        note = f"kept {foreign} baseline(s) of test files not in {root} (a shared directory?)"
        print(f"{note}: prune them from their own project", file=out)
    doomed += [(p, "left by an interrupted write") for p in leftover_temp_files(directory)]
    dry = args.dry_run or args.check
    if doomed and not dry:
        with DirectoryLock(directory):
            doomed = remove_files(doomed, invalid)
    verb = "would remove" if dry else "removed"
    for path, reason in doomed:
        print(f"{verb}: {_rel(path, root)} ({reason})", file=out)
    print(
        f"{len(found)} baseline(s) checked; {len(doomed)} file(s) "
        + ("to remove" if dry else "removed"),
        file=out,
    )
    return _report_invalid(invalid, err) or (EXIT_REGRESSION if args.check and doomed else EXIT_OK)


# -- entry point --------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tokrate",
        description="Look after pytest-tokrate baseline files.",
        epilog="Exit codes: 0 ok; 1 regression found (diff) or something to prune (prune "
        "--check); 2 usage or git error; 3 a baseline file invalid or unreadable (each named; "
        "prune removes none of them); 4 no baseline matches (show).",
    )
    sub = parser.add_subparsers(dest="group", required=True)
    group = sub.add_parser("baselines", help="list, show, diff or prune baseline files")
    cmds = group.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--dir", help="baseline directory (default: ini tokrate_baseline_dir, else baselines)"
    )
    common.add_argument(
        "--root",
        help="project root (default: nearest directory with pyproject.toml, pytest.ini, ...)",
    )
    p = cmds.add_parser("list", parents=[common], help="every baseline, one line per run")
    p.add_argument("--json", action="store_true", help="print the files as JSON")
    p = cmds.add_parser("show", parents=[common], help="one test's baselines in full")
    p.add_argument("test", metavar="TEST", help="test id, file path, or part of a test id")
    p.add_argument("--json", action="store_true", help="print the file itself")
    p = cmds.add_parser("diff", parents=[common], help="working tree against a git revision")
    p.add_argument("rev", metavar="GIT-REV", nargs="?", default="HEAD")
    p.add_argument("--tolerance", help="as --tokrate-tolerance (default: the plugin's)")
    p.add_argument("--metrics", help="as --tokrate-gate-metrics (default: the plugin's)")
    p.add_argument(
        "--min-decode-tokens", help="as --tokrate-min-decode-tokens (default: the plugin's)"
    )
    p = cmds.add_parser("prune", parents=[common], help="remove baselines of deleted tests")
    p.add_argument("--dry-run", action="store_true", help="only say what would be removed")
    p.add_argument(
        "--check", action="store_true", help="like --dry-run, exit 1 if anything would be removed"
    )
    return parser


def main(
    argv: Sequence[str] | None = None, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return int(exc.code or 0)
    commands = {"list": cmd_list, "show": cmd_show, "diff": cmd_diff, "prune": cmd_prune}
    try:
        return commands[args.command](args, out, err)
    except BrokenPipeError:  # `tokrate baselines list | head`: the reader left, not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except CliError as exc:
        print(f"tokrate: {exc}", file=err)
        return exc.code
    except BaselineError as exc:
        print(f"tokrate: {exc}", file=err)
        return EXIT_INVALID
    except TokrateError as exc:
        print(f"tokrate: {exc}", file=err)
        return EXIT_USAGE


__all__ = ["main"]
