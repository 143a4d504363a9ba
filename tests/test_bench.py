"""Benchmark script: `--inference-only` measures serving a checkpoint and nothing of training."""

import json

from training import bench


def test_inference_only_writes_serving_rows_and_no_training_rows(tmp_path):
    rows = bench.main(["--threads", "1", "--inference-only", "--out-dir", str(tmp_path)])
    assert not any(k.startswith(("train_", "ar_train_")) for k in rows)
    assert {"segment_2000_chars_ms", "infill_1_word_20_steps_ms", "generate_1_segment_20_steps_ms"} <= set(rows)
    assert all(v > 0 for v in rows.values())
    saved = json.loads((tmp_path / "bench.json").read_text())
    assert saved["speed"] == rows
    assert (tmp_path / "bench.md").read_text().startswith("| measurement (1 CPU thread) | value |")
