#!/usr/bin/env bash
# Install the runtime requirements into .venv and serve the demo on http://127.0.0.1:7860
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/pip install -q -r requirements.txt
export GRADIO_ANALYTICS_ENABLED=False HF_HUB_OFFLINE=1
exec .venv/bin/python app.py
