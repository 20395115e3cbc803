"""Setup check: the embedded engine evaluates a multi-token prompt on this CPU and was
built with the instruction sets named as arguments (e.g. ``AVX2 AVX512``).

Exits non-zero (or dies by a signal) when llama.cpp was built for instructions this
machine does not run, or without the ones asked for; scripts/setup.sh then rebuilds it.
"""

from __future__ import annotations

import contextlib
import os
import sys

import llama_cpp

from pytest_tokrate.backends.models import smollm2_path

built = llama_cpp.llama_print_system_info().decode()
missing = [f for f in sys.argv[1:] if f"{f} = 1" not in built]
if missing:
    sys.exit(f"llama.cpp was built without {', '.join(missing)}: {built.strip()}")

with open(os.devnull, "w") as devnull, contextlib.redirect_stderr(devnull):
    llm = llama_cpp.Llama(model_path=str(smollm2_path()), n_ctx=64, n_threads=1, verbose=False)
tokens = llm.tokenize(b"The weather today is sunny and", add_bos=True)
llm.eval(tokens)  # a batch of several tokens: the matrix kernels that need AMX or AVX-512
llm.close()
