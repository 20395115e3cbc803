"""Engine parity: the embedded engine's tok/s against llama.cpp's own ``llama-bench``.

Both run the same llama.cpp (llama-bench is built from the installed llama-cpp-python's
sdist by scripts/llamacpp_tools.sh), the same GGUF file and the same threads, and each
compares like with like (tools/llama-bench/llama-bench.cpp):

- decode: llama-bench's ``tg N @ dD`` (D prompt tokens evaluated untimed, then N single-
  token decodes timed) against the plugin's decode tok/s after a D-token prompt with
  ``num_predict=N`` (llama.cpp's decode timer, ``llama_perf_context``);
- prefill: llama-bench's ``pp D`` (D tokens from an empty cache, one batch) against the
  plugin's prefill tok/s of the same D-token prompt.

The plugin is measured through its public path: ``Runner`` over the embedded backend with
the options a user passes, the prompt sent raw so that it is exactly D engine tokens.
Runs alternate (plugin, llama-bench, then llama-bench, plugin, ...) and the ratio of the
medians of all rounds is printed. Targets (issue 14): decode >= 0.98, prefill >= 0.95.

``--outside`` measures as a user sees it instead: ``python -m pytest`` on a one-test file
with ``--tokrate-model`` and ``--tokrate-report-json``, the decode tok/s read from the
report, against llama-bench's ``tg`` at the prompt's depth (target >= 0.97).

    python benchmarks/bench_engine_parity.py                       # 12 pairs, 1 thread
    python benchmarks/bench_engine_parity.py --flash-attn off      # the old default
    python benchmarks/bench_engine_parity.py --outside --pairs 4
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from pytest_tokrate.backends.base import Request
from pytest_tokrate.backends.llamacpp import LlamaCppBackend
from pytest_tokrate.backends.models import resolve_model
from pytest_tokrate.core.prompts import filler
from pytest_tokrate.core.runner import Runner
from pytest_tokrate.core.settings import Layer, resolve

ROOT = Path(__file__).resolve().parent.parent
TARGETS = {"decode": 0.98, "prefill": 0.95, "outside": 0.97}
OUTSIDE_TEST = """
def test_parity(tokrate):
    tokrate.run({prompt!r}, raw=True)
"""


def tools_dir(given: str | None) -> Path:
    """Where llama-bench is: ``--tools`` or the (cached) build of scripts/llamacpp_tools.sh."""
    if given:
        return Path(given)
    out = subprocess.run(
        ["bash", str(ROOT / "scripts" / "llamacpp_tools.sh")],
        check=True,
        capture_output=True,
        text=True,
    )
    return Path(out.stdout.strip().splitlines()[-1])


def exact_prompt(model_path: str, n_tokens: int) -> str:
    """Raw text that the engine turns into exactly ``n_tokens`` prompt tokens (a BOS the
    model adds included), as llama-bench's prompt is ``n`` tokens."""
    import llama_cpp

    vocab = llama_cpp.Llama(model_path=model_path, vocab_only=True, verbose=False)

    def count(text: str) -> int:
        return len(vocab.tokenize(text.encode(), add_bos=True, special=True))

    tokens = vocab.tokenize(filler(n_tokens).encode(), add_bos=False, special=True)
    for cut in range(n_tokens, 0, -1):
        text = vocab.detokenize(tokens[:cut]).decode("utf-8", errors="ignore").strip()
        if count(text) == n_tokens:
            return text
    raise SystemExit(f"no text of exactly {n_tokens} tokens found: try another --depth.")


def bench_run(bench: Path, model: str, args: argparse.Namespace) -> dict[str, list[float]]:
    """One llama-bench invocation per figure: ``pp D`` and ``tg N @ dD``, ``-r rounds``."""
    out: dict[str, list[float]] = {}
    common = [str(bench), "-m", model, "-t", str(args.threads), "-r", str(args.rounds)]
    common += ["-fa", args.bench_flash_attn, "-o", "json"]
    tests = {
        "prefill": ["-p", str(args.depth), "-n", "0"],
        "decode": ["-p", "0", "-n", str(args.num_predict), "-d", str(args.depth)],
    }
    for figure, extra in tests.items():
        done = subprocess.run([*common, *extra], check=True, capture_output=True, text=True)
        (result,) = json.loads(done.stdout)
        out[figure] = [float(v) for v in result["samples_ts"]]
    return out


def plugin_run(
    runner: Runner, prompt: str, options: dict[str, Any], rounds: int, warmup: int
) -> Any:
    settings = resolve([Layer("bench", rounds=rounds, warmup=warmup, options=options)])
    m = runner.run(Request(prompt=prompt, raw=True), settings)
    return {
        "prefill": [s.prefill_tps for s in m.samples if s.prefill_tps],
        "decode": [s.decode_tps for s in m.samples if s.decode_tps],
        "tokens": [(s.prompt_tokens, s.output_tokens) for s in m.samples],
        "engine": m.model.extra.get("engine_settings"),
    }


def outside_run(args: argparse.Namespace, prompt: str, workdir: Path) -> Any:
    """The decode tok/s ``python -m pytest`` reports for a one-test file."""
    (workdir / "test_parity.py").write_text(OUTSIDE_TEST.format(prompt=prompt))
    report = workdir / "report.json"
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(workdir)]
    command += [f"--tokrate-model={args.model}", f"--tokrate-num-predict={args.num_predict}"]
    command += [f"--tokrate-rounds={args.rounds}", f"--tokrate-report-json={report}"]
    command += ["--tokrate-option", f"num_thread={args.threads}", "--tokrate-calibrate=off"]
    if args.flash_attn:
        command += ["--tokrate-option", f"flash_attn={args.flash_attn}"]
    subprocess.run(command, check=True, capture_output=True, text=True, cwd=workdir)
    data = json.loads(report.read_text())
    (test,) = data["measurements"]
    return {"decode": [s["decode_tps"] for s in test["samples"] if s["decode_tps"]]}


def show(name: str, plugin: list[float], bench: list[float], per_run: int, other: str) -> None:
    """The ratio of medians, and the range of the ratios of each pair's medians."""
    p, b = statistics.median(plugin), statistics.median(bench)
    ratio = p / b
    pairs = [
        statistics.median(plugin[i : i + per_run]) / statistics.median(bench[i : i + per_run])
        for i in range(0, min(len(plugin), len(bench)), per_run)
    ]
    met = "met" if ratio >= TARGETS[name] else "NOT met"
    verdict = f"  target >= {TARGETS[name]}: {met}" if other == "llama-bench" else ""
    print(
        f"  {name:<8} plugin {p:6.1f} tok/s  {other} {b:6.1f} tok/s  ratio {ratio:.3f} "
        f"(pairs {min(pairs):.3f}-{max(pairs):.3f}){verdict}"
    )


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=12, help="plugin/llama-bench pairs")
    ap.add_argument("--rounds", type=int, default=2, help="rounds (repetitions) per run")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--depth", type=int, default=43, help="prompt tokens (decode depth)")
    ap.add_argument("--num-predict", type=int, default=128, help="tokens generated")
    ap.add_argument("--flash-attn", default=None, help="the plugin's flash_attn option")
    ap.add_argument("--bench-flash-attn", default="auto", help="llama-bench's -fa")
    ap.add_argument(
        "--against-flash-attn",
        help="compare with the plugin itself at this flash_attn (e.g. off) instead of llama-bench",
    )
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--tools", help="directory with llama-bench (default: build/cache)")
    ap.add_argument("--outside", action="store_true", help="through `python -m pytest`")
    return ap.parse_args()


def main() -> None:
    args = parse_args()
    spec = resolve_model(args.model, "embedded")
    model = str(spec.path)
    prompt = exact_prompt(model, args.depth)
    options: dict[str, Any] = {"num_predict": args.num_predict, "num_thread": args.threads}
    if args.flash_attn:
        options["flash_attn"] = args.flash_attn
    backends = [LlamaCppBackend(spec, reference=False) for _ in range(2)]
    runners = [Runner(b) for b in backends]
    versus = {**options, "flash_attn": args.against_flash_attn}
    bench = None if args.against_flash_attn else tools_dir(args.tools) / "llama-bench"
    workdir = Path(tempfile.mkdtemp(prefix="parity-"))
    figures = ("decode",) if args.outside else ("decode", "prefill")
    runs: list[dict[str, list[float]]] = [{f: [] for f in figures} for _ in range(2)]
    details: Any = None
    for pair in range(args.pairs):
        warmup = 1 if pair == 0 else 0  # the engines stay loaded: one warm-up round each
        # Alternate who goes first, so a drift of the machine's speed hits both alike.
        for turn in (0, 1) if pair % 2 == 0 else (1, 0):
            if turn == 0 and args.outside:
                got = outside_run(args, prompt, workdir)
            elif turn == 0:
                got = details = plugin_run(runners[0], prompt, options, args.rounds, warmup)
            elif bench is None:
                got = plugin_run(runners[1], prompt, versus, args.rounds, warmup)
            else:
                got = bench_run(bench, model, args)
            for figure in figures:
                runs[turn][figure].extend(got[figure])
    for backend in backends:
        backend.close()
    path = "python -m pytest" if args.outside else "Runner"
    other = f"plugin flash_attn={args.against_flash_attn}" if bench is None else "llama-bench"
    print(
        f"{args.model} ({Path(model).name}), {args.threads} thread(s), prompt {args.depth} "
        f"tokens, {args.num_predict} generated, {args.pairs} pairs x {args.rounds} rounds, "
        f"plugin through {path}, flash_attn={args.flash_attn or 'default'}, against {other}"
        + (f" -fa {args.bench_flash_attn}" if bench is not None else "")
    )
    if details is not None:
        print(f"  plugin engine settings: {details['engine']}")
        print(f"  plugin (prompt, output) tokens per round: {sorted(set(details['tokens']))}")
    for figure in figures:
        name = "outside" if args.outside else figure
        show(name, runs[0][figure], runs[1][figure], args.rounds, other)


if __name__ == "__main__":
    main()
