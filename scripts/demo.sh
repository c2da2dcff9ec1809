#!/usr/bin/env bash
# Installs what is missing, builds unroll and runs the main demo.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo
cmake --build build -j "$(nproc 2>/dev/null || echo 2)"
# A character-level LSTM on the shipped 300 KB of Shakespeare: about a minute
# on 2 cores, printing the smoothed train loss and, every 250 updates, the loss
# on the held-out last tenth (both fall), then sampled text.
./build/char_rnn
