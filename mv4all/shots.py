"""Shot lists for text-to-video models: a whole-song MV script -> one prompt per clip a model can render.

``mv4all shots script.json --target NAME -o shots.jsonl`` reads a ``SongScript`` (what ``mv4all describe
--whole-song`` writes) and plans one row per clip for a text-to-video model family (``ShotPrompt``):

- Times: every boundary sits on a bar line (the script's measured downbeats, with evenly spaced lines filled into
  holes longer than ``GAP_BARS`` bars as describe's own grid does, and said so; the span's own start and end count
  as bar lines too). A script shot is first snapped to the nearest bar lines (a shot shorter than a bar is merged
  into its neighbour, and the row says so); one longer than the target's clip is cut into consecutive pieces at
  bar lines, as evenly as the bars allow, each at most the clip length. When a single bar is longer than the clip
  (very slow songs, short clips), that bar is cut at its beats, or at even steps of at most the clip length when
  the beats are too long as well, and the row's ``note`` says so. Rows cover the script's span without gap or
  overlap.
- Prompts: a style prefix shared by every row (MV type and genres, the palette and the style words of the
  overview), then the shot's text, trimmed to the target's prompt budget at a sentence boundary, else at a word
  boundary (and the row says so). The prefix takes at most ``PREFIX_SHARE`` of the budget.
- Targets are data (``shot_targets.yaml``, read by ``mv4all.t2v_targets``: clip length, fps, prompt budget in tokens
  or words per model family), not code; ``--targets FILE`` reads another file of the same shape.

Token budgets are counted exactly when the target's tokenizer file is already on this machine (its ``tokenizer``
entry: the local Hugging Face cache or a path; nothing is downloaded), else with ``approx_tokens``, a documented
and deliberately generous estimate (see there). An optional LLM pass (``builders.llm.shot_prompts``, composed by
the command line) rewrites each row's text for the target and re-checks the budget with the same functions.
"""

from __future__ import annotations

import bisect
import csv
import io
import json
import math
import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Literal

from pydantic import ValidationError

from mv4all.schema import Record, SongScript
from mv4all.t2v_targets import (  # noqa: F401 - re-exported: the targets are part of this module's API
    TARGETS_FILE,
    WORDS_PER_TOKEN_GUESS,
    Counter,
    PromptBudget,
    T2VTarget,
    TargetsError,
    TokenizerRef,
    approx_tokens,
    count_words,
    counter_for,
    get_target,
    load_targets,
)

DECIMALS = 3  # times in the list are milliseconds
EPS = 1e-6
GAP_BARS = 2.5  # a hole in the detected downbeats longer than this many (median) bars is filled, as describe does
PREFIX_SHARE = 0.4  # the shared style prefix takes at most this share of the prompt budget


class ScriptError(ValueError):
    """A script that cannot be planned (no shots, no span)."""


# --------------------------------------------------------------------------- prompt text

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
COLOURS = ("red", "orange", "amber", "yellow", "gold", "golden", "green", "teal", "cyan", "turquoise", "blue", "navy",
           "indigo", "purple", "violet", "magenta", "pink", "white", "black", "gray", "grey", "silver", "brown",
           "beige", "sepia", "crimson", "scarlet", "neon")
_COLOUR_CANON = {"grey": "gray", "golden": "gold", "scarlet": "red", "crimson": "red", "navy": "blue",
                 "violet": "purple"}
# Look and light words worth carrying into every shot (found in the overview, in this order of preference).
STYLE_WORDS = ("low-key", "shadowy", "high-contrast", "bright and airy", "evenly lit", "dimly lit", "sunlit",
               "candlelit", "golden-hour", "moody", "dreamy", "surreal", "cinematic", "film-like", "grainy",
               "black-and-white", "monochrome", "vintage", "retro", "glossy", "gritty", "handheld", "slow-motion",
               "animated", "hand-drawn", "cartoon", "pastel", "saturated", "muted", "washed-out", "minimalist")
_STYLED_WITH = re.compile(r"\bstyled with ([^.;]+)", re.I)


def _join_list(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def palette(text: str, top: int = 3) -> list[str]:
    """Colour words of a text, canonical spelling, in order of first mention."""
    found: list[str] = []
    for word in re.findall(r"[a-z]+", text.lower()):
        if word in COLOURS:
            name = _COLOUR_CANON.get(word, word)
            if name not in found:
                found.append(name)
    return found[:top]


def style_words(text: str, top: int = 4) -> list[str]:
    """The overview's 'styled with ...' phrase (the offline writer's genre attitude), then known look words."""
    out: list[str] = []
    m = _STYLED_WITH.search(text)
    if m:
        out.append(" ".join(m.group(1).split()).strip(" ,"))
    low = text.lower()
    for word in STYLE_WORDS:
        if re.search(rf"(?<![\w-]){re.escape(word)}(?![\w-])", low) and not any(word in o for o in out):
            out.append(word)
    return out[:top]


def style_prefix(script: SongScript, counter: Counter) -> str:
    """The sentence(s) every prompt starts with, so that separately rendered clips look like one video.

    Parts in order of importance (kind of video, palette, style), each kept only while the prefix stays within
    ``PREFIX_SHARE`` of the budget; the first part is cut at a word boundary if even it is too long.
    """
    kind = script.mv_type.strip()
    genres = [g.strip() for g in script.genres if g.strip()][:2]
    inner = "; ".join(x for x in (kind, ", ".join(genres)) if x)
    parts = [f"Music video ({inner})." if inner else "Music video."]
    colours = palette(script.overview)
    if colours:
        parts.append(f"Palette: {_join_list(colours)}.")
    styles = style_words(script.overview)
    if styles:
        parts.append(f"Style: {', '.join(styles)}.")
    limit = max(1, int(PREFIX_SHARE * counter.budget.amount))

    def ok(text: str) -> bool:
        return counter.used(text) <= limit and counter.fits(text)

    prefix = ""
    for part in parts:
        candidate = f"{prefix} {part}".strip()
        if ok(candidate):
            prefix = candidate
        elif not prefix:
            prefix = _cut_words(part, ok)
            break
        else:
            break
    return prefix


def _cut_words(sentence: str, ok: Callable[[str], bool]) -> str:
    """The longest word-boundary prefix of ``sentence`` (closed with a full stop) that passes ``ok``; may be ''."""
    words = sentence.split()

    def cut(k: int) -> str:
        return (" ".join(words[:k]).rstrip(",;:-\u2014 ") + ".") if k else ""

    lo, hi = 0, len(words)  # ok(cut(lo)) holds (the empty cut always fits)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if ok(cut(mid)):
            lo = mid
        else:
            hi = mid - 1
    return cut(lo)


def join_prompt(prefix: str, body: str) -> str:
    return " ".join(x for x in (prefix.strip(), " ".join(body.split())) if x)


def fit_prompt(prefix: str, body: str, counter: Counter) -> tuple[str, bool]:
    """``prefix + body`` within the budget: whole sentences of the body while they fit, else the first sentence
    cut at a word boundary. Returns the prompt and whether anything was cut."""
    body = " ".join(body.split())
    full = join_prompt(prefix, body)
    if counter.fits(full):
        return full, False
    sentences = [s for s in _SENTENCE_END.split(body) if s.strip()]
    kept: list[str] = []
    for sentence in sentences:
        if counter.fits(join_prompt(prefix, " ".join([*kept, sentence]))):
            kept.append(sentence)
        else:
            break
    if kept:
        return join_prompt(prefix, " ".join(kept)), True
    first = _cut_words(sentences[0] if sentences else "", lambda s: counter.fits(join_prompt(prefix, s)))
    return join_prompt(prefix, first), True


# --------------------------------------------------------------------------- times


@dataclass
class _Point:
    t: float
    kind: Literal["bar", "beat", "clock"]


def _r(t: float) -> float:
    return round(float(t), DECIMALS)


def script_span(script: SongScript) -> tuple[float, float]:
    shots = sorted(script.shots, key=lambda s: (s.start, s.end))
    if not shots:
        raise ScriptError("the script has no shots")
    start, end = _r(shots[0].start), _r(max(s.end for s in shots))
    if end - start <= EPS:
        raise ScriptError(f"the script's shots span no time ({start}-{end} s)")
    return start, end


def bar_lines(script: SongScript) -> tuple[list[float], str]:
    """Bar lines inside the span plus the span's ends, and where they came from: the measured downbeats, else
    bars from the tempo (``beats_per_bar`` or 4 beats), else "none": then the script's own shot boundaries stand
    in for them (there is nothing to snap to)."""
    start, end = script_span(script)
    f = script.facts
    inner = sorted({_r(d) for d in f.downbeats if start + EPS < _r(d) < end - EPS})
    how = "downbeats"
    if inner:  # holes in the detected downbeats (a breakdown, a missed bar) get evenly spaced bar lines
        bar = statistics.median(b - a for a, b in zip(inner, inner[1:])) if len(inner) >= 2 else \
            ((f.beats_per_bar or 4) * 60.0 / f.tempo if f.tempo > 0 else 0.0)
        return (_fill_gaps([start, *inner, end], bar) if bar > 0 else [start, *inner, end]), how
    if f.tempo > 0:
        bar = (f.beats_per_bar or 4) * 60.0 / f.tempo
        inner = [_r(start + k * bar) for k in range(1, int((end - start) / bar) + 1)]
        inner = [t for t in inner if start + EPS < t < end - EPS]
        how = "tempo"
    if not inner:
        how = "none"
        inner = sorted({_r(x) for shot in script.shots for x in (shot.start, shot.end)
                        if start + EPS < _r(x) < end - EPS})
    return [start, *inner, end], how


def _fill_gaps(points: list[float], bar: float) -> list[float]:
    """Even bar lines inside every gap longer than ``GAP_BARS`` bars (as ``describe --whole-song``'s grid)."""
    out = [points[0]]
    for p in points[1:]:
        gap = p - out[-1]
        if gap > GAP_BARS * bar:
            n = round(gap / bar)
            out += [_r(out[-1] + gap * k / n) for k in range(1, n)]
        out.append(p)
    return out


def _beat_length(script: SongScript, bar: float) -> tuple[int, float]:
    """Beats in a bar of ``bar`` seconds: from the tempo when known, else the meter (or 4)."""
    f = script.facts
    n = round(bar * f.tempo / 60.0) if f.tempo > 0 else (f.beats_per_bar or 4)
    n = max(1, n)
    return n, bar / n


def _refine(points: list[_Point], clip: float, script: SongScript, beats: bool) -> list[_Point]:
    """Cut every gap longer than ``clip``: at the bar's beats (when there are bars), then (gaps still too long)
    at even clock steps."""
    out = [points[0]]
    for p, q in zip(points, points[1:]):
        gap = q.t - p.t
        if beats and gap > clip + EPS:
            n, beat = _beat_length(script, gap)
            for k in range(1, n):
                t = _r(p.t + k * beat)
                if out[-1].t + EPS < t < q.t - EPS:
                    out.append(_Point(t, "beat"))
        out.append(q)
    final = [out[0]]
    for p, q in zip(out, out[1:]):
        gap = q.t - p.t
        if gap > clip + EPS:
            m = math.ceil(gap / clip - EPS)
            while True:  # even steps, rounded to ms; one more step if the rounding pushed one past the clip
                steps = [p.t, *(_r(p.t + k * gap / m) for k in range(1, m)), q.t]
                if all(b - a <= clip + EPS for a, b in zip(steps, steps[1:])):
                    break
                m += 1
            final += [_Point(t, "clock") for t in steps[1:-1]]
        final.append(q)
    return final


def _even_pieces(points: list[_Point], clip: float) -> list[tuple[_Point, _Point]]:
    """Consecutive pieces, each at most ``clip`` long, ending on ``points``: the fewest pieces, and among those
    the most even lengths (least sum of squares); a dynamic programme over the cut points."""
    n = len(points)
    best: list[tuple[int, float] | None] = [None] * n
    prev = [-1] * n
    best[0] = (0, 0.0)
    for j in range(1, n):
        for i in range(j - 1, -1, -1):
            length = points[j].t - points[i].t
            if length > clip + EPS:
                break
            if best[i] is None:
                continue
            cand = (best[i][0] + 1, best[i][1] + length * length)
            if best[j] is None or cand < best[j]:
                best[j], prev[j] = cand, i
    if best[-1] is None:  # cannot happen after _refine; kept as a loud failure rather than a silent gap
        raise ScriptError("could not cut a shot into pieces within the clip length")
    cuts = [n - 1]
    while cuts[-1] > 0:
        cuts.append(prev[cuts[-1]])
    cuts.reverse()
    return [(points[a], points[b]) for a, b in zip(cuts, cuts[1:])]


def _section_at(script: SongScript, t: float, fallback: str) -> str:
    for s in script.sections:
        if s.start - EPS <= t < s.end - EPS:
            return s.label
    return fallback


# --------------------------------------------------------------------------- the plan


class ShotPrompt(Record):
    """One row of a shot list: a clip to render, its time on the song's clock and its prompt."""

    index: int  # 1-based position in the list
    shot: int  # 1-based index of the script shot it renders (several rows when a shot was cut into pieces)
    start: float  # seconds from the song start, on a bar line (see ``note`` for the exceptions)
    end: float
    duration: float  # end - start, at most the target's clip length
    section: str  # label of the section the clip starts in
    prompt: str  # style prefix + shot text, within the target's prompt budget
    words: int
    tokens_estimate: int  # the encoder's sequence length (special tokens included): estimated, or exact (see CLI)
    target: str
    note: str = ""  # what was done to fit: pieces, cuts inside a bar, merged shots, trimmed text, LLM rewrites


COLUMNS: tuple[str, ...] = tuple(ShotPrompt.model_fields)


@dataclass
class ShotPlan:
    target: T2VTarget
    counter: Counter
    prefix: str
    grid: str  # where the bar lines came from: "downbeats", "tempo" or "none"
    rows: list[ShotPrompt]
    bodies: list[str]  # each row's untrimmed shot text (what an LLM rewrite starts from)
    parts: list[tuple[int, int]]  # (k, n): the row is piece k of n of its script shot
    notes: list[list[str]] = field(default_factory=list)  # each row's notes before the prompt was fitted

    @property
    def trimmed(self) -> int:
        return sum("trimmed" in r.note for r in self.rows)

    def row(self, i: int, body: str, extra: Iterable[str] = ()) -> ShotPrompt:
        """Row ``i`` with a new body (refitted to the budget) and its notes plus ``extra``."""
        prompt, cut = fit_prompt(self.prefix, body, self.counter)
        notes = [*self.notes[i], *extra] + (["text trimmed to the prompt budget"] if cut else [])
        return self.rows[i].model_copy(update={
            "prompt": prompt, "words": count_words(prompt), "tokens_estimate": self.counter.token_estimate(prompt),
            "note": "; ".join(dict.fromkeys(notes))})


def plan_shots(script: SongScript, target: T2VTarget) -> ShotPlan:
    """The shot list of ``script`` for ``target`` (see the module docstring for the rules)."""
    counter = counter_for(target)
    clip = target.clip_seconds
    lines, how = bar_lines(script)
    shots = sorted(enumerate(script.shots), key=lambda x: (x[1].start, x[1].end))
    # Script boundaries (between consecutive shots: the midpoint of any gap or overlap) snapped to bar lines.
    cuts = [lines[0]]
    for (_, a), (_, b) in zip(shots, shots[1:]):
        t = (a.end + b.start) / 2
        k = bisect.bisect_left(lines, t)
        near = min((x for x in lines[max(0, k - 1): k + 1]), key=lambda x: (abs(x - t), x))
        cuts.append(max(near, cuts[-1]))
    cuts.append(lines[-1])
    grid_note = {"tempo": f"no downbeats in the script: bar lines from the tempo ({script.facts.tempo:.0f} BPM)",
                 "none": "no downbeats or tempo in the script: its own shot times, long shots cut at the clip "
                         "length"}.get(how)

    rows: list[ShotPrompt] = []
    bodies: list[str] = []
    parts: list[tuple[int, int]] = []
    notes: list[list[str]] = []
    absorbed: list[int] = []
    spans: list[tuple[int, float, float, list[int]]] = []  # (script shot index, start, end, absorbed shots)
    for (orig, _), a, b in zip(shots, cuts, cuts[1:]):
        if b - a <= EPS:
            absorbed.append(orig)  # shorter than a bar: merged into the next shot that keeps a span
            continue
        spans.append((orig, a, b, absorbed))
        absorbed = []
    if absorbed and spans:  # trailing merged shots go to the last kept one
        orig, a, b, before = spans[-1]
        spans[-1] = (orig, a, b, before + absorbed)

    inferred = set(lines[1:-1]) - {_r(d) for d in script.facts.downbeats} if how == "downbeats" else set()
    prefix = style_prefix(script, counter)
    for orig, a, b, merged in spans:
        shot = script.shots[orig]
        points = [_Point(t, "bar") for t in lines if a - EPS <= t <= b + EPS]
        pieces = _even_pieces(_refine(points, clip, script, beats=how != "none"), clip)
        for k, (p, q) in enumerate(pieces, start=1):
            note: list[str] = []
            if grid_note:
                note.append(grid_note)
            if len(pieces) > 1:
                note.append(f"piece {k}/{len(pieces)} of script shot {orig + 1}")
            if merged and k == 1:
                note.append("takes in script shot" + ("s " if len(merged) > 1 else " ")
                            + ", ".join(str(m + 1) for m in merged) + " (shorter than a bar)")
            if how != "none" and (p.kind != "bar" or q.kind != "bar"):
                i = max(0, bisect.bisect_right(lines, p.t + EPS) - 1)
                bar = lines[min(i + 1, len(lines) - 1)] - lines[i]
                how_cut = "at its beats" if "clock" not in (p.kind, q.kind) else "in even steps within the clip"
                note.append(f"a bar of {bar:.2f} s is longer than the {clip:g} s clip: cut {how_cut}")
            if inferred and (p.t in inferred or q.t in inferred):
                note.append("on a bar line filled in where no downbeat was detected")
            start, end = _r(p.t), _r(q.t)
            rows.append(ShotPrompt(index=len(rows) + 1, shot=orig + 1, start=start, end=end, duration=_r(end - start),
                                   section=_section_at(script, start, shot.section), prompt="", words=0,
                                   tokens_estimate=0, target=target.name, note=""))
            bodies.append(shot.text)
            parts.append((k, len(pieces)))
            notes.append(note)
    plan = ShotPlan(target=target, counter=counter, prefix=prefix, grid=how, rows=rows, bodies=bodies, parts=parts,
                    notes=notes)
    plan.rows = [plan.row(i, bodies[i]) for i in range(len(rows))]
    return plan


# --------------------------------------------------------------------------- files


def load_script(path: str | Path) -> SongScript:
    """A ``SongScript`` JSON file, or ``ScriptError`` naming the file and the first problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScriptError(f"{path}: cannot read ({exc.strerror or exc})") from None
    try:
        return SongScript.model_validate_json(text)
    except ValidationError as exc:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(map(str, first.get("loc", ()))) or "(file)"
        raise ScriptError(f"{path}: not a whole-song MV script (mv4all describe --whole-song): {where}: "
                          f"{first.get('msg', exc)}") from None


def output_format(path: str | Path) -> Literal["jsonl", "csv"]:
    suffix = Path(path).suffix.lower()
    if suffix in (".jsonl", ".csv"):
        return suffix[1:]  # type: ignore[return-value]
    raise ValueError(f"{path}: the shot list is written as .jsonl or .csv (by the file's suffix)")


def render_rows(rows: list[ShotPrompt], fmt: Literal["jsonl", "csv"]) -> str:
    if fmt == "jsonl":
        return "".join(r.model_dump_json() + "\n" for r in rows)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(COLUMNS), lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow(r.model_dump())
    return buf.getvalue()


def write_rows(rows: list[ShotPrompt], path: str | Path) -> Path:
    """Write the list as JSONL or CSV (by suffix), atomically."""
    from mv4all.safety import atomic_write_text

    return atomic_write_text(path, render_rows(rows, output_format(path)))


def read_rows(path: str | Path) -> list[ShotPrompt]:
    """A shot list written by ``write_rows`` (JSONL or CSV)."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    if output_format(path) == "jsonl":
        return [ShotPrompt.model_validate(json.loads(line)) for line in text.splitlines() if line.strip()]
    return [ShotPrompt.model_validate(row) for row in csv.DictReader(io.StringIO(text))]
