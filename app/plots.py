"""Pure functions from model outputs to plotly figures and to HTML text views (no gradio).

Figures: the boundary heatmap (characters x levels, "P(segment begins at this character)"), the
existence bars of a sampler step, training curves. HTML: the infill/generation text with filled
regions highlighted, the masked-span preview, and segments as alternating highlighted spans with
whitespace made visible. All text is HTML-escaped; views carry `dir="auto"` so right-to-left
scripts render in their own direction.
"""

from __future__ import annotations

import html
import unicodedata
from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

LEVEL_NAMES = {0: "level 0 (word-like)", 1: "level 1 (sentence-like)"}
ROW_NAMES = {0: "L0 words", 1: "L1 sentences"}  # heatmap rows: short, so a phone keeps room for the cells
WS_GLYPHS = {" ": "·", "\n": "⏎", "\t": "→", "\r": "␍"}
HEATMAP_WINDOW = 160  # characters visible at once in a long heatmap (drag to pan)
_FONT = dict(family="ui-monospace, SFMono-Regular, Menlo, Consolas, monospace")


def level_name(level: int) -> str:
    return LEVEL_NAMES.get(level, f"level {level}")


def glyph(ch: str) -> str:
    """A character as shown in plots: whitespace and control characters as visible pictures,
    other unprintable characters (format marks, unassigned) as U+XXXX."""
    if ch in WS_GLYPHS:
        return WS_GLYPHS[ch]
    cat = unicodedata.category(ch)
    if ch.isprintable() or cat == "Cn":  # Cn: newer than this Python's Unicode tables (e.g. recent emoji)
        return ch
    return control_picture(ch) if cat == "Cc" else f"U+{ord(ch):04X}"


# --- figures ------------------------------------------------------------------------------------


def empty_figure(message: str = "", height: int = 160) -> go.Figure:
    fig = go.Figure()
    fig.update_layout(
        height=height,
        margin=dict(l=10, r=10, t=10, b=10),
        xaxis=dict(visible=False),
        yaxis=dict(visible=False),
        annotations=[dict(text=message, showarrow=False, font=dict(size=14, color="#777"))] if message else [],
        plot_bgcolor="rgba(0,0,0,0)",
        paper_bgcolor="rgba(0,0,0,0)",
    )
    return fig


def bos_heatmap(
    text: str,
    char_bos: Sequence[np.ndarray],
    starts: Sequence[Sequence[int]] | None = None,
    *,
    title: str | None = None,
    row_names: Sequence[str] | None = None,
    zmax: float = 1.0,
    colorbar_title: str = "P(begins)",
    highlight: Sequence[tuple[int, int]] = (),
    threshold: float | None = None,
) -> go.Figure:
    """Heatmap of per-character scores: one row per level, one cell per character.

    char_bos: per level, an (n_chars,) array of P(a segment of that level begins at char i).
    starts: per level, the chosen segment starts, marked with a dot on their cell.
    highlight: (start, end) character regions (e.g. the filled ones) shaded behind the cells.
    threshold: where given, starts at or below it (the first character, or a segment that reached
    its maximum length: `force_coverage`) get a hollow dot, the others a filled one."""
    n = len(text)
    rows = [np.asarray(b, dtype=float).reshape(-1)[:n] for b in char_bos]
    if n == 0 or not rows:
        return empty_figure("no text")
    z = np.vstack([np.pad(r, (0, n - len(r))) for r in rows])  # (levels, n)
    names = list(row_names) if row_names else [ROW_NAMES.get(i, f"L{i}") for i in range(len(rows))]
    glyphs = [glyph(c) for c in text]
    custom = np.array([glyphs] * len(rows), dtype=object)
    fig = go.Figure(
        go.Heatmap(
            z=z.round(4).tolist(),  # plain lists: the browser sees one number per cell
            x=list(range(n)),
            y=names,
            zmin=0.0,
            zmax=zmax,
            colorscale="Blues",
            xgap=1,
            ygap=2,
            customdata=custom,
            hovertemplate="char %{x} '%{customdata}'<br>%{y}<br>" + colorbar_title + " = %{z:.3f}<extra></extra>",
            # below the plot, so a narrow screen keeps its width for the cells
            colorbar=dict(
                title=dict(text=colorbar_title, side="top"),
                orientation="h",
                thickness=8,
                len=0.45,
                x=1.0,
                xanchor="right",
                y=-0.08,
                yanchor="top",
            ),
        )
    )
    legend_shown: set[str] = set()
    for lv, st in enumerate(starts or []):
        if lv >= len(names):
            break
        xs = [s for s in st if 0 <= s < n]
        forced = [threshold is not None and z[lv, s] <= threshold for s in xs]
        for kind, symbol, keep in (
            ("segment start", "circle", False),
            ("start forced (first character or maximum length)", "circle-open", True),
        ):
            sel = [s for s, f in zip(xs, forced) if f == keep]
            if not sel:
                continue
            fig.add_trace(
                go.Scatter(
                    x=sel,
                    y=[names[lv]] * len(sel),
                    mode="markers",
                    marker=dict(symbol=symbol, size=6, color="#e4572e", line=dict(width=1.5, color="#e4572e")),
                    name=kind,
                    showlegend=kind not in legend_shown,
                    hovertemplate=kind + " at char %{x}<extra></extra>",
                )
            )
            legend_shown.add(kind)
    for s, e in highlight:
        if e > s:
            fig.add_vrect(
                x0=s - 0.5, x1=min(e, n) - 0.5, fillcolor="#ffd166", opacity=0.35, line_width=0, layer="above"
            )
    tick = dict(tickmode="array", tickvals=list(range(n)), ticktext=glyphs, tickangle=0, tickfont=_FONT)
    xaxis = dict(title=None, showgrid=False, zeroline=False, **(tick if n <= HEATMAP_WINDOW else {}))
    if n > HEATMAP_WINDOW:
        xaxis["range"] = [-0.5, HEATMAP_WINDOW - 0.5]
    fig.update_layout(
        title=dict(text=title, x=0.01, font=dict(size=13)) if title else None,
        height=140 + 55 * len(rows) + (25 if title else 0),
        margin=dict(l=10, r=10, t=35 if title else 10, b=60),
        xaxis=xaxis,
        yaxis=dict(autorange="reversed", showgrid=False),
        dragmode="pan",
        legend=dict(orientation="h", yanchor="top", y=-0.08, xanchor="left", x=0.0, font=dict(size=11)),
    )
    return fig


def existence_figure(existence: Sequence[float], level: int, label: str | None = None) -> go.Figure:
    """Existence probability of each slot being denoised (a slot below 0.5 is dropped when decoding).
    `label`: the step, as the caption names it (e.g. "gap 2 · step 5/20")."""
    if not existence:
        return empty_figure("no existence probabilities at this step", height=140)
    p = [float(x) for x in existence]
    fig = go.Figure(
        go.Bar(
            x=list(range(len(p))),
            y=p,
            marker=dict(color=["#3b7dd8" if v >= 0.5 else "#c9c9c9" for v in p]),
            hovertemplate="slot %{x}: P(exists) = %{y:.3f}<extra></extra>",
        )
    )
    unit = "word slot" if level >= 1 else "character slot"
    fig.add_hline(y=0.5, line=dict(color="#e4572e", dash="dash", width=1))
    fig.update_layout(
        height=170,
        margin=dict(l=10, r=10, t=30, b=30),
        title=dict(
            text=f"existence per {unit} (level {level})" + (f", {label}" if label else ""),
            x=0.01,
            font=dict(size=12),
        ),
        yaxis=dict(range=[0, 1.02], title=None),
        xaxis=dict(title=None),
        bargap=0.15,
    )
    return fig


def training_curves(records: list[dict], keys: Sequence[str], max_points: int = 2000) -> go.Figure:
    """One panel per key: training records as lines, held-out evaluation records as markers."""
    keys = [k for k in keys if any(k in r for r in records)][:6]
    if not records or not keys:
        return empty_figure("no training log to plot", height=200)
    fig = make_subplots(rows=len(keys), cols=1, shared_xaxes=True, subplot_titles=keys, vertical_spacing=0.06)
    shown: set[str] = set()  # one legend entry per split, from whichever panel draws it first
    for row, key in enumerate(keys, start=1):
        for split, style in (
            ("train", dict(mode="lines", line=dict(color="#3b7dd8"))),
            ("heldout", dict(mode="lines+markers", line=dict(color="#e4572e"))),
        ):
            pts = [
                (r["step"], r[key])
                for r in records
                if "step" in r and _num(r.get(key)) and (r.get("split", "train") == split)
            ]
            if not pts:
                continue
            if len(pts) > max_points:  # keep the browser light: an evenly strided subset, last point kept
                stride = -(-len(pts) // max_points)
                pts = pts[::stride] + ([pts[-1]] if (len(pts) - 1) % stride else [])
            xs, ys = zip(*pts, strict=True)
            fig.add_trace(
                go.Scatter(x=xs, y=ys, name=split, legendgroup=split, showlegend=split not in shown, **style),
                row=row,
                col=1,
            )
            shown.add(split)
    fig.update_layout(
        height=60 + 190 * len(keys),
        margin=dict(l=10, r=10, t=40, b=30),
        legend=dict(orientation="h", y=1.02, yanchor="bottom"),
    )
    fig.update_xaxes(title_text="step", row=len(keys), col=1)
    return fig


def _num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v)


# --- HTML text views ----------------------------------------------------------------------------


def control_picture(ch: str) -> str:
    """A visible stand-in for a control character (U+0000-U+001F -> the Control Pictures block)."""
    code = ord(ch)
    if code < 0x20:
        return chr(0x2400 + code)
    return "\u2421" if code == 0x7F else "\ufffd"


def _esc(s: str, visible_ws: bool = False) -> str:
    """HTML-escape `s`; control characters become visible pictures, whitespace too if asked."""
    out = []
    for ch in s:
        if visible_ws and ch in WS_GLYPHS:
            out.append(f'<span class="zk-ws">{WS_GLYPHS[ch]}</span>' + ("<br>" if ch == "\n" else ""))
        elif ch not in "\n\t" and (ord(ch) < 0x20 or 0x7F <= ord(ch) < 0xA0):
            out.append(f'<span class="zk-ws">{control_picture(ch)}</span>')
        else:
            out.append(html.escape(ch))
    return "".join(out)


def regions_html(text: str, regions: Sequence[tuple[int, int]], cls: str, *, title: str = "") -> str:
    """`text` with each (start, end) region wrapped in `<mark class=cls>`; the rest as context."""
    parts, prev = [], 0
    for i, (s, e) in enumerate(sorted((max(0, s), min(len(text), e)) for s, e in regions)):
        if s < prev:
            s = prev
        parts.append(f'<span class="zk-ctx">{_esc(text[prev:s])}</span>')
        tip = f' title="{html.escape(title)} {i + 1}: chars {s}–{e}"' if title else ""
        parts.append(f'<mark class="{cls}" data-start="{s}" data-end="{e}"{tip}>{_esc(text[s:e]) or "&#8203;"}</mark>')
        prev = max(prev, e)
    parts.append(f'<span class="zk-ctx">{_esc(text[prev:])}</span>')
    return f'<div class="zk-text" dir="auto">{"".join(parts)}</div>'


def filled_html(text: str, filled: Sequence[tuple[int, int]], caption: str = "") -> str:
    """Infill / generation view: filled regions highlighted against the untouched context."""
    cap = f'<div class="zk-caption">{html.escape(caption)}</div>' if caption else ""
    return cap + regions_html(text, filled, "zk-fill", title="filled region")


def mask_preview_html(text: str, spans: Sequence[tuple[int, int]], markers: Sequence[tuple[int, int]] = ()) -> str:
    """The input with masked spans (and typed gap markers) shown as the gaps the model will fill."""
    if not text:
        return '<div class="zk-text zk-muted">Type or paste text above.</div>'
    regions = sorted(set(map(tuple, spans)) | set(map(tuple, markers)))
    if not regions:
        return (
            '<div class="zk-text zk-muted">No gaps yet: select characters in the box and press '
            "<b>Mask</b>, or type ___ or [...] where text should go.</div>"
        )
    return regions_html(text, regions, "zk-mask", title="gap")


def segments_html(text: str, starts: Sequence[int], *, caption: str = "", visible_ws: bool = True) -> str:
    """Segments as alternating highlighted spans (whitespace visible), each titled with its offsets."""
    cap = f'<div class="zk-caption">{html.escape(caption)}</div>' if caption else ""
    if not text:
        return cap + '<div class="zk-text zk-muted">no text</div>'
    cuts = sorted({s for s in starts if 0 < s < len(text)} | {0})
    ends = cuts[1:] + [len(text)]
    parts = []
    for i, (s, e) in enumerate(zip(cuts, ends, strict=True)):
        cls = "zk-seg-a" if i % 2 == 0 else "zk-seg-b"
        parts.append(
            f'<span class="zk-seg {cls}" title="segment {i + 1}: chars {s}–{e} ({e - s} chars)">'
            f"{_esc(text[s:e], visible_ws)}</span>"
        )
    return cap + f'<div class="zk-text zk-segs" dir="auto">{"".join(parts)}</div>'


def markdown_table(header: Sequence[str], rows: Sequence[Sequence]) -> str:
    """A small Markdown table (cells are escaped for pipes)."""

    def cell(v) -> str:
        if isinstance(v, float):
            v = f"{v:.3f}"
        return str(v).replace("|", "\\|")

    lines = ["| " + " | ".join(map(cell, header)) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(map(cell, r)) + " |" for r in rows]
    return "\n".join(lines)
