"""Run a stand-in server from the command line (for the benchmark and manual checks).

    python -m standin ollama [--port N] [--replay] [--gpu-fraction F]
    python -m standin openai [--port N] [--replay] [--flavour llama.cpp|vllm|bare]

Prints ``listening on http://127.0.0.1:PORT`` once ready (after recording the replay, if
asked), then serves until interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading

from .engine import EngineHost
from .ollama_server import OllamaStandin
from .openai_server import FLAVOURS, OpenAIStandin


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m standin")
    parser.add_argument("protocol", choices=["ollama", "openai"])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--replay", action="store_true", help="stream recorded real tokens")
    parser.add_argument("--num-thread", type=int, default=1)
    parser.add_argument("--gpu-fraction", type=float, default=0.0)
    parser.add_argument("--flavour", choices=FLAVOURS, default="llama.cpp")
    args = parser.parse_args(argv)
    engine = EngineHost(num_thread=args.num_thread, replay=args.replay)
    if args.replay:
        for entry in engine:
            entry.record()
    server: OllamaStandin | OpenAIStandin
    if args.protocol == "ollama":
        server = OllamaStandin(engine, gpu_fraction=args.gpu_fraction, port=args.port)
    else:
        server = OpenAIStandin(engine, flavour=args.flavour, port=args.port)
    server.start()
    print(f"listening on {server.url}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with contextlib.suppress(KeyboardInterrupt):
        stop.wait()
    server.stop()
    engine.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
