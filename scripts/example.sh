#!/usr/bin/env bash
# The main job: set up, then run the example suite on the embedded SmolLM2 model against
# the committed baselines and print its report (speed table, token yardstick, quality and
# gate verdicts). Same run as the dogfooding step of scripts/test.sh. Extra arguments go
# to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec bash scripts/gate_examples.sh "$@"
