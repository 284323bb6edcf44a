"""``mv4all shots``: a whole-song MV script -> a shot list for a text-to-video model (mv4all/shots.py), and its
optional LLM rewrite (builders/llm/shot_prompts.py) against the strict fake OpenAI server. Offline and fast:
the scripts are built here (a 3-minute 120 BPM 4/4 song, a 60 BPM 3/4 song with a pickup, slower ones)."""

from __future__ import annotations

import json
import math
import random
import re
import tomllib
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from mv4all.cli import app
from mv4all.schema import Shot, SongFacts, SongScript, SongSection
from mv4all.shots import (
    COLUMNS,
    PREFIX_SHARE,
    TARGETS_FILE,
    ScriptError,
    ShotPrompt,
    TargetsError,
    approx_tokens,
    bar_lines,
    counter_for,
    fit_prompt,
    get_target,
    load_targets,
    plan_shots,
    read_rows,
    render_rows,
    script_span,
    write_rows,
)

ROOT = Path(__file__).resolve().parents[1]
KEY = "sk-shots-test-77c1-DO-NOT-LEAK-2e9f"
CHAT = "/v1/chat/completions"

TEXTS = [
    "Open on the singer alone on a rooftop at dusk, city lights flickering on below her.",
    "The band plays in a cramped garage; the drummer's sticks blur as the camera circles them. Sparks of red light "
    "bounce off the cymbals. A slow push-in on the bassist's hands.",
    "Cut to dancers in a flooded warehouse, their splashes frozen in slow motion under teal strobes.",
    "A paper boat drifts down a gutter stream; the camera follows it at water level past neon signs.",
    "Close-up of the singer's face in gold backlight, eyes closed, on the downbeat under Am.",
    # a long one: over every budget but Wan's, so trimming happens on most targets
    " ".join(["The crowd surges toward the stage as confetti falls through beams of white and magenta light, and the "
              "guitarist climbs onto the monitor, silhouetted against a wall of LED panels that pulse in waves."] * 6)
    + " Finally the lights cut to black.",
]
OVERVIEW = ("The MV for this synthpop song is a live performance video, built around the performers and the crowd, "
            "styled with retro 80s synth sheen. The camera work shows handheld moves with a cut every few seconds, "
            "low-key and shadowy in red, teal and gold tones. The tone is bright and yearning.")


def make_script(duration: float = 180.0, bpm: float = 120.0, bpb: int = 4, *, pickup: float = 0.0,
                jitter: float = 0.0, seed: int = 0, short_shot: bool = True, downbeats: bool = True) -> SongScript:
    """A whole-song script as ``describe --whole-song`` writes it: measured downbeats (optionally jittered), sections
    of about 8 bars, shots of 1-16 bars whose boundaries sit near (not always on) the downbeats, one shorter than a
    bar (it must be merged), covering 0..duration."""
    rnd = random.Random(seed)
    bar = bpb * 60.0 / bpm
    downs, t = [], pickup
    while t < duration - 1e-9:
        downs.append(round(t + (rnd.uniform(-jitter, jitter) if t > 0 else 0.0), 3))
        t += bar
    inner = [d for d in downs if 0 < d < duration]
    edges = [0.0, *inner[8::8], duration]
    sections = [SongSection(start=a, end=b, label="ABAC"[i % 4]) for i, (a, b) in enumerate(zip(edges, edges[1:]))]
    shots, start, i = [], 0.0, 0
    while start < duration - 1e-9:
        nbars = rnd.choice([1, 1, 2, 3, 5, 9, 16])
        later = [d for d in inner if d > start + 0.25 * bar]
        end = later[nbars - 1] if len(later) >= nbars else duration
        if short_shot and i == 3 and end < duration:  # a shot shorter than a bar, ending off the grid
            end = round(start + 0.3 * bar, 3)
        elif i % 3 == 1 and end < duration:  # describe's windows are not always exactly on the downbeat
            end = round(end + rnd.uniform(-0.04, 0.04), 3)
        section = next((s.label for s in sections if s.start <= start < s.end), "A")
        shots.append(Shot(start=start, end=end, section=section, title=f"Beat {i + 1}", text=TEXTS[i % len(TEXTS)]))
        start, i = end, i + 1
    facts = SongFacts(duration=duration, tempo=bpm, beats_per_bar=bpb, key="A minor",
                      downbeats=downs if downbeats else [])
    return SongScript(source="song.mp3", model="tiny", facts=facts, sections=sections, mv_type="Live Performance",
                      genres=["synthpop", "pop"], overview=OVERVIEW, shots=shots)


SONGS = {
    "3min-120bpm-4/4": lambda: make_script(180.0, 120.0, 4, jitter=0.01, seed=1),
    "3min-60bpm-3/4-pickup": lambda: make_script(180.0, 60.0, 3, pickup=0.5, seed=2),
}
TARGET_NAMES = list(load_targets())


def _grid(script: SongScript) -> set[float]:
    return set(bar_lines(script)[0])


def check_plan(script: SongScript, plan) -> None:
    """Every property a shot list promises, for any script and target."""
    rows, target, counter = plan.rows, plan.target, plan.counter
    start, end = script_span(script)
    assert rows and [r.index for r in rows] == list(range(1, len(rows) + 1))
    # coverage: from the span's start to its end, each row starting where the previous ended
    assert rows[0].start == start and rows[-1].end == end
    for a, b in zip(rows, rows[1:]):
        assert a.end == b.start, (a, b)
    grid = _grid(script)
    for r in rows:
        assert r.end > r.start and r.duration == round(r.end - r.start, 3)
        assert r.duration <= target.clip_seconds + 1e-9, (target.name, r)
        if plan.grid != "none" and "longer than the" not in r.note:  # bar lines, unless cut inside a long bar
            assert r.start in grid and r.end in grid, r
        # the budget, counted the way the target counts, and the reported figures
        assert counter.used(r.prompt) <= target.prompt_budget.amount, (target.name, r.prompt)
        assert r.words == len(r.prompt.split()) and r.tokens_estimate == counter.token_estimate(r.prompt)
        if target.prompt_budget.unit == "tokens":
            assert r.tokens_estimate <= target.prompt_budget.amount
        assert r.target == target.name
        # one shared style prefix
        assert plan.prefix and r.prompt.startswith(plan.prefix + " ")
    assert counter.used(plan.prefix) <= PREFIX_SHARE * target.prompt_budget.amount
    # every script shot is rendered, or merged into a neighbour that says so
    shown = {r.shot for r in rows}
    merged = {int(m) for r in rows if "takes in script shot" in r.note
              for m in re.findall(r"\d+", r.note.split("takes in script shot")[1].split("(")[0])}
    assert shown | merged == set(range(1, len(script.shots) + 1))


# ---------------------------------------------------------------------------- targets are data


def test_targets_file_holds_the_model_families():
    targets = load_targets()
    assert {"cogvideox", "cogvideox1.5", "hunyuanvideo", "wan2.1", "text2video-zero"} <= set(targets)
    cog, zero = targets["cogvideox"], targets["text2video-zero"]
    assert (cog.clip_seconds, cog.fps, cog.frames, cog.prompt_budget.amount) == (6.0, 8, 49, 226)
    assert zero.prompt_budget.amount == 77 and zero.prompt_budget.reserved == 2  # CLIP: BOS + EOS
    for t in targets.values():
        assert t.source and t.model and t.prompt_budget.encoder
        if t.frames:  # a clip never plans more seconds than the model's default frames play
            assert t.clip_seconds <= t.frames / t.fps + 1e-9
    assert get_target("CogVideoX").name == "cogvideox"
    with pytest.raises(TargetsError, match="unknown target 'sora'.*cogvideox"):
        get_target("sora")
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert TARGETS_FILE.name in package_data["mv4all"]  # installed with the package


def test_bad_targets_files_fail_with_the_file_named(tmp_path):
    bad = tmp_path / "t.yaml"
    bad.write_text("targets:\n  x: {model: m, clip_seconds: 0, fps: 8, prompt_budget: {unit: tokens, amount: 10}}\n")
    with pytest.raises(TargetsError, match=r"t.yaml: target 'x': clip_seconds"):
        load_targets(bad)
    bad.write_text("targets:\n  x: {model: m, clip_seconds: 4, fps: 8, prompt_budget: {unit: chars, amount: 10}}\n")
    with pytest.raises(TargetsError, match="prompt_budget.unit"):
        load_targets(bad)
    bad.write_text("nothing: here\n")
    with pytest.raises(TargetsError, match="targets"):
        load_targets(bad)


# ---------------------------------------------------------------------------- every target, two songs


@pytest.mark.parametrize("song", list(SONGS))
@pytest.mark.parametrize("name", TARGET_NAMES)
def test_every_target_keeps_clip_length_budget_bars_and_coverage(song, name):
    script = SONGS[song]()
    plan = plan_shots(script, get_target(name))
    check_plan(script, plan)
    assert plan.grid == "downbeats"
    # the prefix carries the MV type, the palette and the style read off the overview
    assert "Live Performance" in plan.prefix and "red" in plan.prefix
    # the long text is trimmed where the budget is small, never where it is large
    trimmed = [r for r in plan.rows if "trimmed" in r.note]
    if get_target(name).prompt_budget.amount < 300:
        assert trimmed
    else:
        assert not trimmed
    # no row is cut inside a bar here: these bars are at most 3 s, every clip at least 4 s
    assert not any("longer than the" in r.note for r in plan.rows)


def test_long_shots_are_cut_evenly_on_bars():
    script = make_script(180.0, 120.0, 4, seed=3)  # 2 s bars
    plan = plan_shots(script, get_target("cogvideox"))  # 6 s clips
    by_shot: dict[int, list[ShotPrompt]] = {}
    for r in plan.rows:
        by_shot.setdefault(r.shot, []).append(r)
    cut = {s: rows for s, rows in by_shot.items() if len(rows) > 1}
    assert cut, "the script has shots longer than 6 s"
    for s, rows in cut.items():
        total = rows[-1].end - rows[0].start
        assert len(rows) == -(-round(total, 3) // 6)  # the fewest pieces ...
        assert max(r.duration for r in rows) - min(r.duration for r in rows) <= 2.0 + 1e-9  # ... within a bar
        assert all(f"piece {k}/{len(rows)} of script shot {s}" in r.note for k, r in enumerate(rows, start=1))


def test_boundaries_snap_to_downbeats_and_short_shots_merge():
    script = make_script(60.0, 120.0, 4, seed=4)
    assert any(abs(s.end - round(s.end / 2) * 2) > 1e-6 for s in script.shots[:-1])  # some ends are off the grid
    plan = plan_shots(script, get_target("wan2.1"))
    check_plan(script, plan)
    (merged,) = [r for r in plan.rows if "takes in script shot" in r.note]
    assert "takes in script shot 4 (shorter than a bar)" in merged.note and merged.shot == 5


def test_holes_in_the_downbeats_get_bar_lines_filled_in():
    script = make_script(60.0, 120.0, 4, seed=8)
    script.facts.downbeats = [d for d in script.facts.downbeats if not 20.0 < d < 40.0]  # a breakdown: none found
    lines, how = bar_lines(script)
    assert how == "downbeats" and [t for t in lines if 20.0 < t < 40.0] == [22.0 + 2 * k for k in range(9)]
    plan = plan_shots(script, get_target("cogvideox"))
    check_plan(script, plan)
    filled = [r for r in plan.rows if "where no downbeat was detected" in r.note]
    assert filled and all(20.0 <= r.start <= 40.0 and r.end <= 42.0 for r in filled)
    assert not any("longer than the" in r.note for r in plan.rows)


# ---------------------------------------------------------------------------- slow songs, long bars


def _custom_targets(tmp_path: Path, **entries) -> Path:
    path = tmp_path / "targets.yaml"
    path.write_text(yaml.safe_dump({"targets": entries}))
    return path


def test_bar_longer_than_the_clip_is_cut_at_beats_and_said_so():
    script = make_script(120.0, 40.0, 4, seed=5)  # 6 s bars, 1.5 s beats
    plan = plan_shots(script, get_target("wan2.1"))  # 5 s clips
    check_plan(script, plan)
    inside = [r for r in plan.rows if "longer than the" in r.note]
    assert inside and all("a bar of 6.00 s is longer than the 5 s clip: cut at its beats" in r.note for r in inside)
    beats = {round(k * 1.5, 3) for k in range(0, 81)}
    assert all(r.start in beats and r.end in beats for r in plan.rows)
    assert max(r.duration for r in plan.rows) == 4.5


def test_beats_longer_than_the_clip_are_cut_in_even_steps(tmp_path):
    path = _custom_targets(tmp_path, tiny={"model": "a 1 s model", "clip_seconds": 1.0, "fps": 8,
                                           "prompt_budget": {"unit": "words", "amount": 40}})
    script = make_script(60.0, 40.0, 4, seed=6)  # 1.5 s beats > 1 s clip
    plan = plan_shots(script, get_target("tiny", path))
    check_plan(script, plan)
    assert any("cut in even steps within the clip" in r.note for r in plan.rows)
    assert max(r.duration for r in plan.rows) <= 1.0


def test_scripts_without_downbeats_use_the_tempo_then_their_own_times():
    script = make_script(60.0, 120.0, 4, seed=7, downbeats=False)
    plan = plan_shots(script, get_target("cogvideox"))
    assert plan.grid == "tempo" and all("bar lines from the tempo (120 BPM)" in r.note for r in plan.rows)
    check_plan(script, plan)
    script.facts.tempo = 0.0
    plan = plan_shots(script, get_target("cogvideox"))
    assert plan.grid == "none" and all("its own shot times" in r.note for r in plan.rows)
    check_plan(script, plan)
    starts = {r.start for r in plan.rows}
    assert {round(s.start, 3) for s in script.shots} <= starts  # nothing to snap to: the script's times are kept
    for k, shot in enumerate(script.shots, start=1):  # long shots: the fewest even pieces of at most 6 s
        pieces = [r for r in plan.rows if r.shot == k]
        assert len(pieces) == math.ceil((shot.end - shot.start) / 6.0 - 1e-9)
        assert max(r.duration for r in pieces) - min(r.duration for r in pieces) <= 0.002
    with pytest.raises(ScriptError, match="no shots"):
        plan_shots(script.model_copy(update={"shots": []}), get_target("cogvideox"))


# ---------------------------------------------------------------------------- prompt budget


def test_trimming_keeps_whole_sentences_then_cuts_at_a_word(tmp_path):
    path = _custom_targets(tmp_path, w={"model": "m", "clip_seconds": 4, "fps": 8,
                                        "prompt_budget": {"unit": "words", "amount": 14}})
    counter = counter_for(get_target("w", path))
    prompt, cut = fit_prompt("Music video.", "A red car. A blue sky over the sea. Rain.", counter)
    assert (prompt, cut) == ("Music video. A red car. A blue sky over the sea. Rain.", False)
    prompt, cut = fit_prompt("Music video.", "A red car drives by. A blue sky over the sea at noon. Rain.", counter)
    assert (prompt, cut) == ("Music video. A red car drives by.", True)  # the next sentence would not fit whole
    prompt, cut = fit_prompt("Music video.", "One very long sentence that goes on, and on, past the limit of the "
                                             "budget without a single full stop", counter)
    assert cut and prompt == "Music video. One very long sentence that goes on, and on, past the limit."
    assert len(prompt.split()) == 14


def test_word_budget_targets_count_words(tmp_path):
    path = _custom_targets(tmp_path, gen={"model": "a words-limited service", "clip_seconds": 8, "fps": 24,
                                          "prompt_budget": {"unit": "words", "amount": 30}})
    script = SONGS["3min-120bpm-4/4"]()
    plan = plan_shots(script, get_target("gen", path))
    check_plan(script, plan)
    assert plan.counter.method == "words" and max(r.words for r in plan.rows) <= 30


def _repo_texts() -> list[str]:
    """Prose the repository itself holds: README paragraphs (no code), the prompt templates, the judge rubric, and
    the script texts above."""
    texts = []
    readme = re.sub(r"```.*?```", "", (ROOT / "README.md").read_text(), flags=re.S)
    texts += [p for p in readme.split("\n\n") if len(p.split()) >= 15 and not p.lstrip().startswith(("|", "#"))]
    for path in sorted((ROOT / "builders" / "prompts").glob("*.yaml")) + [ROOT / "eval" / "judge.v1.yaml"]:
        data = yaml.safe_load(path.read_text())
        texts += [str(data[k]) for k in ("system", "user") if len(str(data.get(k) or "").split()) >= 15]
    return texts + TEXTS + [OVERVIEW]


def test_token_estimate_is_generous_on_the_repos_own_texts():
    """No T5/CLIP tokenizer is available offline to compare with, so the estimate is checked against what can be
    checked here: it is at least the number of pieces any of these tokenizers must produce (every word, digit run
    and punctuation run is at least one piece) plus a 25% margin for sub-word splits, and at least the builder's
    independent BPE-piece estimate (builders.llm.tokens.approx_tokens, which splits long words); and it is not so
    generous that it wastes the budget (at most 1.6 times that floor)."""
    from builders.llm.tokens import approx_tokens as bpe_pieces

    texts = [" ".join(t.split()) for t in _repo_texts()]  # prompts are always joined with single spaces
    assert len(texts) >= 20
    for text in texts:
        words = re.findall(r"[^\W\d_]+", text)
        floor = len(words) + len(re.findall(r"\d+", text)) + len(re.findall(r"[^\w\s]+", text))
        est = approx_tokens(text)
        assert est >= floor + 0.25 * len(words), text[:80]
        assert est >= bpe_pieces(text), text[:80]
        assert est <= 1.6 * floor, text[:80]


def test_a_tokenizer_on_this_machine_counts_exactly(tmp_path):
    """A target naming a tokenizer file that is present counts with it (here a tiny word-level tokenizer.json)."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"[UNK]": 0, **{w: i + 1 for i, w in enumerate("music video a the of and".split())}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.save(str(tmp_path / "tokenizer.json"))
    path = _custom_targets(tmp_path, exact={"model": "m", "clip_seconds": 6, "fps": 8, "prompt_budget": {
        "unit": "tokens", "amount": 60, "reserved": 1, "tokenizer": {"file": "tokenizer.json"}}})
    target = get_target("exact", path)
    counter = counter_for(target)
    assert counter.exact and counter.method.startswith("tokenizer ") and counter.method.endswith("tokenizer.json")
    assert counter.tokens("Music video, red.") == 5 and counter.token_estimate("Music video, red.") == 6
    script = SONGS["3min-120bpm-4/4"]()
    check_plan(script, plan_shots(script, target))
    # a tokenizer that is not on this machine falls back to the estimate (nothing is downloaded)
    assert counter_for(get_target("cogvideox")).method == "approx."


# ---------------------------------------------------------------------------- files and the command line


def test_jsonl_and_csv_round_trip(tmp_path):
    plan = plan_shots(SONGS["3min-60bpm-3/4-pickup"](), get_target("text2video-zero"))
    for name in ("shots.jsonl", "shots.csv"):
        path = write_rows(plan.rows, tmp_path / name)
        assert read_rows(path) == plan.rows
    header = (tmp_path / "shots.csv").read_text().splitlines()[0]
    assert header.split(",") == list(COLUMNS)
    assert set(COLUMNS) >= {"index", "start", "end", "duration", "section", "prompt", "words", "tokens_estimate",
                            "target", "note"}
    first = json.loads((tmp_path / "shots.jsonl").read_text().splitlines()[0])
    assert first["start"] == 0.0 and first["target"] == "text2video-zero"
    with pytest.raises(ValueError, match="jsonl or .csv"):
        write_rows(plan.rows, tmp_path / "shots.txt")
    assert render_rows(plan.rows[:1], "csv").count("\n") == 2


def _write_script(tmp_path: Path, script: SongScript) -> Path:
    path = tmp_path / "script.json"
    path.write_text(script.model_dump_json(indent=2))
    return path


def test_cli_end_to_end(tmp_path):
    script = SONGS["3min-120bpm-4/4"]()
    src = _write_script(tmp_path, script)
    runner = CliRunner()
    for name, target in (("shots.jsonl", "cogvideox"), ("shots.csv", "HunyuanVideo")):
        res = runner.invoke(app, ["shots", str(src), "--target", target, "-o", str(tmp_path / name)])
        assert res.exit_code == 0, res.output
        assert "wrote" in res.output and "shots for" in res.output
        rows = read_rows(tmp_path / name)
        plan = plan_shots(script, get_target(target))
        assert rows == plan.rows
        check_plan(script, plan)
    res = runner.invoke(app, ["shots", "--list-targets"])
    assert res.exit_code == 0 and "cogvideox" in res.output and "wan2.1" in res.output
    res = runner.invoke(app, ["shots", str(src), "--target", "sora", "-o", str(tmp_path / "x.jsonl")])
    assert res.exit_code == 2 and "unknown target 'sora'" in res.output
    res = runner.invoke(app, ["shots", str(src), "--target", "wan2.1", "-o", str(tmp_path / "x.txt")])
    assert res.exit_code == 2 and ".jsonl or .csv" in res.output
    res = runner.invoke(app, ["shots", str(src), "--target", "wan2.1", "-o", str(tmp_path / "x.csv"), "--dry-run"])
    assert res.exit_code == 2 and "--llm openai" in res.output
    bad = tmp_path / "bad.json"
    bad.write_text('{"source": "x"}')
    res = runner.invoke(app, ["shots", str(bad), "--target", "wan2.1", "-o", str(tmp_path / "x.csv")])
    assert res.exit_code == 2 and "not a whole-song MV script" in res.output
    assert not (tmp_path / "x.csv").exists() and not (tmp_path / "x.jsonl").exists()


# ---------------------------------------------------------------------------- the LLM rewrite


SHOT = re.compile(r"<<<(SHOT-[0-9A-F]{12})\n(.*?)\n\1>>>", re.S)


def _rewrite(text: str, body: dict) -> dict:
    """Answers read from the shot: ``[long]`` is over every budget the first time and fine when re-asked,
    ``[stubborn]`` is over the budget every time; the rest is a short camera-only prompt naming its piece."""
    shot = SHOT.search(text).group(2)
    limit = int(re.search(r"Word limit for your prompt: (\d+) words", text).group(1))
    reasked = len(body["messages"]) > 2
    piece = m.group(1) if (m := re.search(r"piece (\d+) of", text)) else "1"
    if "[stubborn]" in shot or ("[long]" in shot and not reasked):
        return {"prompt": " ".join(["glowing"] * (3 * limit))}
    words = re.sub(r"\[\w+\]", "", shot).split()[:12]
    return {"prompt": f"Rewritten piece {piece}: " + " ".join(words)}


@pytest.fixture
def server(monkeypatch):
    from builders.llm.shot_prompts import ShotRewrite
    from tests.conftest import fake_llm

    with fake_llm(monkeypatch, KEY, ShotRewrite, _rewrite) as srv:
        yield srv


def _small_script(texts: list[str]) -> SongScript:
    """16 s at 120 BPM: shots of 2, 4, 10 s (the last cut into three pieces on its 2 s bars for 4-6 s clips)."""
    downs = [2.0 * k for k in range(8)]
    spans = [(0.0, 2.0), (2.0, 6.0), (6.0, 16.0)]
    return SongScript(source="s.mp3", facts=SongFacts(duration=16.0, tempo=120.0, beats_per_bar=4, key="C major",
                                                      downbeats=downs),
                      sections=[SongSection(start=0.0, end=16.0, label="A")], mv_type="Dance Performance",
                      genres=["house"], overview=OVERVIEW,
                      shots=[Shot(start=a, end=b, section="A", text=t) for (a, b), t in zip(spans, texts)])


def test_llm_rewrite_keeps_prefix_and_budget_then_serves_from_cache(server, tmp_path):
    from builders.llm.shot_prompts import rewrite_plan

    script = _small_script([TEXTS[0], TEXTS[2] + " Tempo 124 BPM under Am.", TEXTS[3]])
    plan = plan_shots(script, get_target("wan2.1"))
    assert len(plan.rows) == 5 and plan.parts[-3:] == [(1, 3), (2, 3), (3, 3)]
    rows, report = rewrite_plan(plan, script, base_url=server.url, cache_dir=tmp_path / "cache")
    assert report.sent == 5 and report.rewritten == 5 and not report.failures and report.cache_hits == 0
    assert server.count("POST", CHAT) == 5 and all(e["status"] == 200 for e in server.log)
    assert [r.prompt for r in rows][-3:] == [f"{plan.prefix} Rewritten piece {k}: A paper boat drifts down a gutter "
                                             "stream; the camera follows it"
                                             for k in (1, 2, 3)]
    for new, old in zip(rows, plan.rows):
        assert new.prompt.startswith(plan.prefix + " ") and new.prompt != old.prompt
        assert (new.start, new.end, new.note) == (old.start, old.end, old.note)
        assert plan.counter.used(new.prompt) <= 512 and new.words == len(new.prompt.split())
    body = server.chat_bodies[0]
    assert body["temperature"] == 0 and body["response_format"]["json_schema"]["name"] == "ShotRewrite"
    assert "Word limit for your prompt" in body["messages"][1]["content"] and report.cost_usd > 0

    again, report2 = rewrite_plan(plan, script, base_url=server.url, cache_dir=tmp_path / "cache")
    assert server.count("POST", CHAT) == 5 and report2.sent == 0 and report2.cache_hits == 5 and again == rows
    for f in (tmp_path / "cache").rglob("*.json"):
        assert KEY not in f.read_text(encoding="utf-8")
    assert "5/5 rewritten" in report.lines()[0] and "5 from the cache" in report2.lines()[0]


def test_llm_answers_over_budget_are_reasked_then_trimmed(server, tmp_path):
    from builders.llm.shot_prompts import rewrite_plan

    script = _small_script(["[long] " + TEXTS[0], "[stubborn] " + TEXTS[1], TEXTS[4]])
    plan = plan_shots(script, get_target("text2video-zero"))
    rows, report = rewrite_plan(plan, script, base_url=server.url, cache_dir=tmp_path / "cache", concurrency=1,
                                max_reasks=2)
    assert report.rewritten == len(rows) == 5 and report.trimmed == 1 and not report.failures
    assert report.sent == 2 + 3 + 3 and report.reasks == 1 + 2  # [long]: asked, re-asked; [stubborn]: 3 tries
    assert "Rewritten piece 1" in rows[0].prompt and "trimmed" not in rows[0].note  # fine once re-asked
    assert "LLM answer over the prompt budget after 2 re-asks: trimmed" in rows[1].note
    assert rows[1].prompt.startswith(plan.prefix + " glowing")
    for r in rows:
        assert plan.counter.used(r.prompt) <= 77 and r.prompt.startswith(plan.prefix + " ")
    reasks = [b for b in server.chat_bodies if len(b["messages"]) == 4]
    assert reasks and "the limit is 77" in reasks[0]["messages"][3]["content"]


def test_llm_failure_keeps_the_planned_prompt(server, tmp_path):
    from builders.llm.shot_prompts import rewrite_plan

    server.inject("invalid", times=3, schema="ShotRewrite")  # the first row's three tries all break the schema
    script = _small_script(TEXTS[:3])
    plan = plan_shots(script, get_target("cogvideox"))
    rows, report = rewrite_plan(plan, script, base_url=server.url, cache_dir=tmp_path / "cache", concurrency=1)
    (failure,) = report.failures
    assert failure["index"] == 1 and "no valid answer after 3 tries" in failure["reason"]
    assert rows[0].prompt == plan.rows[0].prompt and "planned prompt kept" in rows[0].note
    assert report.rewritten == len(rows) - 1


def test_llm_dry_run_sends_nothing_and_prices(server, tmp_path, monkeypatch):
    from builders.llm.shot_prompts import rewrite_plan

    script = _small_script(TEXTS[:3])
    plan = plan_shots(script, get_target("cogvideox"))
    monkeypatch.delenv("OPENAI_API_KEY")  # a dry run needs no key
    rows, report = rewrite_plan(plan, script, base_url=server.url, cache_dir=tmp_path / "cache", dry_run=True)
    est = report.estimate
    assert server.count("POST", CHAT) == 0 and rows == plan.rows
    assert est.requests == len(plan.rows) and est.cached == 0 and est.input_tokens > 300 and est.output_tokens > 50
    assert est.usd is not None and 0 < est.usd < 0.01 and "nothing sent" in report.lines()[0]
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    rewrite_plan(plan, script, base_url=server.url, cache_dir=tmp_path / "cache")
    est = rewrite_plan(plan, script, base_url=server.url, cache_dir=tmp_path / "cache", dry_run=True)[1].estimate
    assert est.requests == 0 and est.cached == len(plan.rows)


def test_cli_llm_dry_run_then_run_then_cache(server, tmp_path):
    script = _small_script(TEXTS[:3])
    src = _write_script(tmp_path, script)
    out = tmp_path / "shots.jsonl"
    base = ["shots", str(src), "--target", "wan2.1", "-o", str(out), "--llm", "openai", "--base-url", server.url,
            "--cache-dir", str(tmp_path / "cache")]
    runner = CliRunner()
    res = runner.invoke(app, [*base, "--dry-run"])
    assert res.exit_code == 0, res.output
    assert "dry run: 5 requests (0 cached)" in res.output and "nothing sent" in res.output
    assert server.count("POST", CHAT) == 0 and not out.exists()
    res = runner.invoke(app, base)
    assert res.exit_code == 0, res.output
    assert "5/5 rewritten" in res.output and server.count("POST", CHAT) == 5
    rows = read_rows(out)
    assert len(rows) == 5 and all("Rewritten piece" in r.prompt for r in rows)
    res = runner.invoke(app, base)
    assert res.exit_code == 0 and "5 from the cache" in res.output and server.count("POST", CHAT) == 5
    assert read_rows(out) == rows
    res = runner.invoke(app, [*base[:-4], "--llm", "claude"])
    assert res.exit_code == 2 and "must be 'openai'" in res.output
