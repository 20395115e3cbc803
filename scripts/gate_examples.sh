#!/usr/bin/env bash
# Dogfooding: the example suite on the embedded SmolLM2 model, compared with the baselines
# committed in baselines/ (README, "Baselines and the regression gate"), gate enforced.
# Run as they were recorded: one engine thread (a shared 2-core machine), 10 rounds per
# prompt against baselines of 40 (--tokrate-update-baselines measures 4x the rounds).
# Speed is judged relative to the machine reference (--tokrate-calibrate, the default);
# the one-word answers' decode rate is not judged (too few tokens, --tokrate-min-decode-tokens).
# TTFT is not judged here: the machine reference is a decode workload, and when this shared
# host slows prefill more than decode it does not cancel it (one unchanged run: reference
# -26.3%, prefill -47%, TTFT +30.8% machine-adjusted; docs/gate-validation.md, Dogfooding).
# Extra arguments go to pytest:
#   bash scripts/gate_examples.sh --tokrate-gate=report           # regressions as warnings
#   bash scripts/gate_examples.sh --tokrate-update-baselines      # re-record
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python -m pytest examples --tokrate-model=smollm2 \
  --tokrate-option num_thread=1 --tokrate-rounds=10 \
  --tokrate-missing-baseline=fail --tokrate-gate-metrics=decode_tps,pass_rate \
  -p no:cacheprovider "$@"
