"""Fidelity: does the plugin report the decode rate the engine itself reports?

For the same requests on the embedded SmolLM2 model, interleaved, this prints medians of:

- ``plugin / engine (same request)``: the plugin's reported decode tok/s over llama.cpp's
  own counters (``llama_perf_context``: ``n_eval / t_eval``) read independently right
  after the plugin's round. Checks the plumbing: units, token counts, which timer.
- ``plugin / engine (bare loop)``: the plugin's decode tok/s over the engine's rate for the
  same prompt driven by a bare ``Llama.generate`` loop, without the plugin in the way.
  Checks that measuring through the plugin does not slow the engine. Target: within 1%.
- ``client / engine``: the client-side rate ``(n - 1) / (t_end - t_first)`` over the
  engine's rate, through the plugin and through the bare loop. The engine's decode timer
  covers the forward passes only; the client also sees sampling, detokenisation and our
  Python loop, so this is below 1 by the per-token overhead.

Only rounds cut by ``num_predict`` count: in a round that ends on an end-of-generation
token, llama.cpp decodes the last text token before sampling the end token, so the client
span holds one decode step more than ``n - 1`` and the client rate is low by about 1/n.

    python benchmarks/bench_fidelity.py                  # 24 requests of 96 tokens
    python benchmarks/bench_fidelity.py --requests 40 --num-predict 128 --threads 0
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

from pytest_tokrate.backends.base import Request
from pytest_tokrate.backends.llamacpp import LlamaCppBackend
from pytest_tokrate.backends.models import resolve_model
from pytest_tokrate.core.runner import Runner
from pytest_tokrate.core.settings import Layer, resolve

PROMPTS = (
    "Write a long story about a lighthouse keeper and a storm.",
    "Explain in detail how a bicycle gear system works.",
    "List fifty fruits, one per line, with a sentence about each.",
    "Describe the history of the printing press at length.",
)


def engine_rate(llama_cpp: Any, llm: Any) -> tuple[int, float]:
    """llama.cpp's own decode counters for the last request: (n_eval, tokens/s)."""
    perf = llama_cpp.llama_perf_context(llm._ctx.ctx)
    n_eval = int(perf.n_eval)
    return n_eval, n_eval / (perf.t_eval_ms / 1e3) if perf.t_eval_ms > 0 else float("nan")


def bare_round(llama_cpp: Any, llm: Any, tokens: list[int], n: int) -> tuple[float, float]:
    """The same request without the plugin: (client rate, engine rate) of a bare loop."""
    llm.reset()
    llama_cpp.llama_perf_context_reset(llm._ctx.ctx)
    count = 0
    t_first = t_end = 0
    for _token in llm.generate(tokens, temp=0.0, top_k=40, top_p=0.9, min_p=0.0, reset=True):
        count += 1
        t_end = time.perf_counter_ns()
        if count == 1:
            t_first = t_end
        if count >= n:
            break
    client = (count - 1) / ((t_end - t_first) / 1e9)
    return client, engine_rate(llama_cpp, llm)[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=24)
    ap.add_argument("--num-predict", type=int, default=96)
    # One thread by default: on a small shared machine, llama.cpp's spinning workers make
    # multi-threaded decode times swing with whatever else runs, which drowns a 1% effect.
    ap.add_argument("--threads", type=int, default=1, help="num_thread (0: all allowed cores)")
    ap.add_argument("--model", default="smollm2")
    args = ap.parse_args()

    backend = LlamaCppBackend(resolve_model(args.model, "embedded"))
    settings = resolve(
        [
            Layer(
                "bench",
                rounds=1,
                warmup=0,
                options={"num_predict": args.num_predict, "num_thread": args.threads},
            )
        ]
    )
    runner = Runner(backend)
    llama_cpp = backend._llama_cpp
    info = backend.model_info()

    plugin_same: list[float] = []
    plugin_bare: list[float] = []
    client_plugin: list[float] = []
    client_bare: list[float] = []
    skipped = 0
    for i in range(args.requests + 1):
        request = Request(prompt=PROMPTS[i % len(PROMPTS)])
        measurement = runner.run(request, settings)
        sample = measurement.samples[0]
        llm = next(iter(backend._instances.values()))
        engine_same = engine_rate(llama_cpp, llm)[1]
        if i == 0:
            continue  # first request: page-in and allocations, not counted
        if sample.done_reason != "length" or not sample.output_tokens:
            skipped += 1
            continue
        tokens = llm.tokenize(
            backend._chat_prompt(llm, request).encode("utf-8"), add_bos=True, special=True
        )
        bare_client, bare_engine = bare_round(llama_cpp, llm, tokens, sample.output_tokens)
        assert sample.decode_tps is not None and sample.decode_tps_client is not None
        plugin_same.append(sample.decode_tps / engine_same)
        plugin_bare.append(sample.decode_tps / bare_engine)
        client_plugin.append(sample.decode_tps_client / sample.decode_tps)
        client_bare.append(bare_client / bare_engine)
    backend.close()

    def show(label: str, values: list[float]) -> None:
        q = statistics.quantiles(values, n=4) if len(values) > 1 else [values[0]] * 3
        print(f"  {label:<34} median {statistics.median(values):.4f}  IQR {q[0]:.4f}-{q[2]:.4f}")

    print(
        f"{info.name} ({info.quantization}, {info.engine_version}), "
        f"{len(plugin_same)} length-limited requests of {args.num_predict} tokens "
        f"({skipped} ended early, not counted), num_thread={args.threads or 'all'}"
    )
    show("plugin / engine (same request)", plugin_same)
    show("plugin / engine (bare loop)", plugin_bare)
    show("client / engine, through the plugin", client_plugin)
    show("client / engine, bare loop", client_bare)
    drift = abs(statistics.median(plugin_bare) - 1) * 100
    print(f"  target: plugin within 1% of the engine: {'met' if drift <= 1 else 'NOT met'}")


if __name__ == "__main__":
    main()
