"""The public API: `/segment`, `/infill`, `/generate` (gradio_client, JSON results).

Arguments are plain JSON values; results are JSON-serialisable dicts (the model's `to_dict()`
plus the settings used). Invalid input raises a clean error whose message says what is allowed
(gradio_client raises it as `AppError`); the app keeps serving. Limits: see `app.settings.LIMITS`.
Every endpoint takes a last, optional `model` argument: one of the app's model names ("" = the
default); an unknown name is such an error, listing the valid names. "model" in each result names
the model that produced it.
"""

from __future__ import annotations

from app import analysis, settings
from app.callbacks import user_error
from app.models import ModelRegistry
from app.service import ModelService
from app.validation import (
    check_input_text,
    collect_spans,
    parse_length,
    parse_level,
    parse_num_segments,
    parse_refine,
    parse_seed,
    parse_spans,
    parse_steps,
    parse_temperature,
    parse_threshold,
)


def make_endpoints(models: ModelRegistry | ModelService):
    """The three endpoint functions over `models` (typed: gradio derives the API schema). Each
    takes a last, optional `model`: a name from the model dropdown ("" = the default model)."""
    models = ModelRegistry.coerce(models)

    def segment(text: str, threshold: float = settings.DEFAULT_THRESHOLD, model: str = "") -> dict:
        """Learned segmentation of `text` (at most 4000 characters) by `model` ("" = the default).

        Returns {"text", "threshold", "model", "levels": [{"level", "char_bos" (P(a segment begins at
        char i), one per character), "starts" (segment start offsets), "segments" (the text cut at
        the starts), "count", "chars_per_segment"}], "boundary_scores": [precision/recall/F1 of level
        0 vs word starts and level 1 vs sentence starts, strict and ±1]}."""
        try:
            service = models.get(model)
            text = check_input_text(text)
            threshold = parse_threshold(threshold)
            seg = service.segment(text, threshold)
        except Exception as e:
            raise user_error(e, escape=False) from None
        starts = [lv.starts for lv in seg.levels]
        counts = analysis.segment_counts(text, starts)
        levels = [
            {
                **lv.to_dict(),
                "segments": seg.segments(i),
                "count": counts[i]["segments"],
                "chars_per_segment": counts[i]["chars_per_segment"],
            }
            for i, lv in enumerate(seg.levels)
        ]
        return {
            "text": text,
            "threshold": threshold,
            "model": service.name,
            "levels": levels,
            "boundary_scores": analysis.boundary_scores(text, starts),
        }

    def infill(
        text: str,
        spans: list[list[int]] | None = None,
        level: str = "auto",
        length: str = "auto",
        steps: int = settings.DEFAULT_STEPS,
        seed: int = 0,
        model: str = "",
        temperature: float = settings.DEFAULT_TEMPERATURE,
    ) -> dict:
        """Fill gaps in `text`. Gaps are `spans` ([start, end] character offsets, half-open, Python
        string indices) plus every `___` or `[...]` marker in the text.

        level: "auto" | "0" (characters) | "1" (words). length: "auto" (the model sizes the fill: a
        whole-word gap keeps its number of words, at the end of the text existence decides) | "keep"
        (the gap's own length) | a number of characters. steps: 1..200. seed: 0..2**63-1; the same
        inputs, seed and model give the same result. model: a model name ("" = the default).
        temperature: (0, 2], the noise scale of the sampler (1 = the method's; lower = more
        conservative, less varied). Returns {"text", "filled" (the filled regions in "text"),
        "levels", "seed", "steps", "temperature",
        "trajectory": [{"step", "t", "level", "text", "filled", "existence"}], "spans" (the gaps
        used), "model"}."""
        try:
            service = models.get(model)
            text = check_input_text(text)
            all_spans = collect_spans(text, parse_spans(spans))
            lvl = parse_level(level, service.num_levels)
            ln = parse_length(length)
            steps, seed, temp = parse_steps(steps), parse_seed(seed), parse_temperature(temperature)
            res = service.infill(text, all_spans, level=lvl, length=ln, steps=steps, seed=seed, temperature=temp)
        except Exception as e:
            raise user_error(e, escape=False) from None
        return {**res.to_dict(), "spans": [list(s) for s in all_spans], "model": service.name}

    def generate(
        num_segments: int | None = None,
        steps: int = settings.DEFAULT_STEPS,
        seed: int = 0,
        model: str = "",
        temperature: float = settings.DEFAULT_TEMPERATURE,
        refine: float = settings.DEFAULT_REFINE,
    ) -> dict:
        """Unconditional generation from noise. num_segments: top-level segments (None or 0: the
        model decides; at most 8). steps: 1..200. seed: 0..2**63-1. model: a model name ("" = the
        default). temperature: (0, 2] as for /infill. refine: [0, 0.9], the fraction of generated
        words re-infilled in a second pass, least confident first (0 = the method's sampler alone).
        Returns {"text", "seed", "steps", "temperature", "refine", "trajectory", "model"}."""
        try:
            service = models.get(model)
            n, steps, seed = parse_num_segments(num_segments), parse_steps(steps), parse_seed(seed)
            temp, refine = parse_temperature(temperature), parse_refine(refine)
            res = service.generate(num_segments=n, steps=steps, seed=seed, temperature=temp, refine=refine)
        except Exception as e:
            raise user_error(e, escape=False) from None
        return {**res.to_dict(), "model": service.name}

    return segment, infill, generate
