#!/usr/bin/env bash
# Dogfooding: the example suite on the embedded SmolLM2 model, compared with the baselines
# committed in baselines/ (README, "Baselines and the regression gate"). Run as they were
# recorded: one engine thread (a shared 2-core machine) and 20 rounds per prompt. Speed is
# judged relative to the machine reference (--tokrate-calibrate, the default).
#
# Report-only (--tokrate-gate=report): a fresh-clone CI rehearsal flagged both 8-token
# examples about 11% slower relative to the reference while nothing had changed, a false
# alarm the benchmark did not predict for answers that short; a regression is therefore a
# warning here, while a missing, corrupted or newer-schema baseline still fails. Extra
# arguments go to pytest:
#   bash scripts/gate_examples.sh --tokrate-gate=enforce          # fail on regressions
#   bash scripts/gate_examples.sh --tokrate-update-baselines      # re-record
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python -m pytest examples --tokrate-model=smollm2 \
  --tokrate-option num_thread=1 --tokrate-rounds=20 \
  --tokrate-gate=report --tokrate-missing-baseline=fail \
  -p no:cacheprovider "$@"
