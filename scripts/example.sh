#!/usr/bin/env bash
# The main job: set up, then run the example suite on the embedded SmolLM2 model and
# print its report (speed table, quality, gate verdicts). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest examples --tokrate-model=smollm2 -p no:cacheprovider "$@"
