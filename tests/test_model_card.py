"""Model card: each training stage is described from its own logged config."""

from training.model_card import metrics_table, stage_line, stage_name, write_card


def _stage(**tc) -> dict:
    base = {"batch_size": 8, "lr": 0.001, "threads": 1, "bf16": True}
    return {
        "train_config": {**base, **tc},
        "world_size": 2,
        "steps": 120,
        "chars_seen": 1000,
        "wall_clock_min": 2.5,
        "median_chars_per_sec": 7000.0,
        "bad_steps": 0,
    }


def test_stage_line_names_what_trained_and_how():
    line = stage_line(_stage(train_only="levels.0", init_from="runs/a/release", respread_rows="128-255"))
    assert line.startswith("only `levels.0` trained (everything else frozen, from `runs/a/release`)")
    assert "byte embedding rows 128-255 re-spread around their mean direction first" in line
    assert "120 steps of 2 × 8 documents, peak lr 0.001, 2 DDP processes of 1 torch thread(s), bf16 autocast" in line
    assert "**wall-clock:** 2.500 min" in line
    frozen = stage_line(_stage(frozen_levels=1, init_from="runs/b/release"))
    assert frozen.startswith("levels below 1 frozen (from `runs/b/release`), the others trained;")
    assert "re-spread" not in frozen and "scaled" not in frozen and "floor" not in frozen
    soft = stage_line(
        _stage(
            train_only="levels.0.splitter",
            init_from="runs/c/release",
            soften_bos=0.1,
            model_overrides={"levels": [{"short_len": 3}, {}]},
        )
    )
    assert "; the level-0 BOS head's output layer scaled by 0.1 first; short-segment floor 3 at level 0;" in soft
    wide = {"mlm_negatives": 512, "mlm_same_cos": 0.95, "mlm_logit_scale": 16.0, "contrastive_negatives": 512}
    wide_line = stage_line(
        _stage(frozen_levels=1, model_overrides={"levels": [{}, wide], "loss_weights": {"mlm": 10 / 14}})
    )
    assert (
        "; level-1 MLM term: 512 negatives, 0.95 same-word cosine, logits 16.0·cos"
        "; level-1 InfoNCE reconstruction terms: 512 negatives; loss weight mlm 0.714;" in wide_line
    )
    head = stage_line(_stage(frozen_levels=1, model_overrides={"levels": [{}, {**wide, "mlm_denoiser": True}]}))
    assert "logits 16.0·cos, averaged with its denoiser variant;" in head


def test_stage_line_says_fp32_when_bf16_was_turned_off():
    assert "1 torch thread(s), bf16 autocast;" in stage_line(_stage())
    off = stage_line({**_stage(), "bf16_off": True})
    assert "1 torch thread(s), fp32 (bf16 autocast asked for, off on a CPU without fast bf16);" in off


def test_stage_name_shows_a_config_number_that_differs_from_the_position():
    assert stage_name({"train_config": {"out_dir": "runs/small_stage30"}}, 18) == " (`small_stage30`)"
    assert stage_name({"train_config": {"out_dir": "runs/small_stage17"}}, 17) == ""
    assert stage_name({"train_config": {"out_dir": "runs/small_level1"}}, 2) == ""


def test_stage_line_says_level_0_alone_when_upper_levels_never_start():
    assert stage_line(_stage(upper_levels_from=10**9)).startswith("level 0 alone;")
    assert stage_line(_stage(upper_levels_from=50)).startswith("all levels, level 0 alone before step 50;")


def test_card_names_the_hardware_from_the_log_or_the_argument(tmp_path):
    import json

    import torch

    from training.loop import describe_hardware

    where = describe_hardware(torch.device("cpu"))
    assert where.endswith(f"torch {torch.__version__}") and "CPU" in where
    (tmp_path / "config.json").write_text(
        json.dumps(
            {
                "levels": [
                    {
                        "d_model": 8,
                        "n_latents": 2,
                        "seg_len": 4,
                        "compressor_layers": 1,
                        "draft_layers": 1,
                        "denoiser_layers": 1,
                    }
                ]
            }
        )
    )
    (tmp_path / "metrics.json").write_text(json.dumps({"recon_acc_l0": 0.5}))
    start = {"event": "start", "params": 10, "train_config": {"batch_size": 2}, "hardware": "Chip X (CUDA), torch 9"}
    end = {"event": "end", "step": 3, "chars_seen": 30, "elapsed": 60.0, "bad_steps": 0}
    (tmp_path / "train_log.jsonl").write_text("\n".join(json.dumps(r) for r in (start, end)) + "\n")
    card = write_card(tmp_path, "cmd", None, None, None)
    assert "trained on English Wikipedia lead sections on Chip X (CUDA)." in card
    assert "- **Hardware:** Chip X (CUDA), torch 9." in card
    card = write_card(tmp_path, "cmd", None, None, None, hardware="one GPU, torch 1")
    assert "lead sections on one GPU." in card and "- **Hardware:** one GPU, torch 1." in card


def test_metrics_table_shows_the_95_interval_beside_a_rate_counted_over_gaps():
    m = {"infill_1w_exact": 0.04, "infill_1w_exact_ci95": [0.01566, 0.09837], "infill_1w_cer": 0.5}
    b = {"ar_rescore_infill_1w_exact": 0.04, "ar_rescore_infill_1w_exact_ci95": [0.01566, 0.09837]}
    row = next(r for r in metrics_table(m, b).splitlines() if r.startswith("| Single-word infill: exact match"))
    assert row == "| Single-word infill: exact match | 0.040 [0.016, 0.098] | 0.040 [0.016, 0.098] |"
    cer_row = next(r for r in metrics_table(m, b).splitlines() if r.startswith("| Single-word infill: CER"))
    assert cer_row == "| Single-word infill: CER of the fill | 0.500 | — |"  # no interval where none was measured
