"""`mv4all describe --whole-song`: a whole song measured once, described in 30 s windows, merged into one script.

The song is assembled here from sample-corpus specs with known tempo and known section changes (A B A B C A,
each part rendered at its own tempo, with its own seed, and cut on a bar line), so the measured sections and
downbeats can be scored against the truth. The song is measured once, by the command itself (its script JSON
holds the facts and sections); the merge is checked on those facts with a stand-in model that writes
well-formed 15-frame descriptions, since the tiny test model's texts are not.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from typer.testing import CliRunner

from mv4all import song as S
from mv4all.cli import app
from mv4all.describe import Decoding
from mv4all.schema import CLIP_SECONDS, MVBeat, MVDescription, SongFacts, SongScript, SongSection

SR = 44100
PARTS = "ABABCA"
SHORT = ["--max-new-tokens", "16"]
TOLERANCE = 0.05  # a shot boundary's distance to a detected downbeat
SECTION_TOLERANCE = 2.0


def _specs():
    from builders.sample.specs import default_specs

    specs = default_specs(clips=18, seed=0)
    # A: pop, C major, 120 BPM; B: metal, C minor, slowed to 100 BPM; C: electronic, D major, 128 BPM (all 4/4)
    return {"A": specs[0], "B": replace(specs[8], tempo=100.0), "C": specs[4]}


def assemble_song(path: Path, parts: str = PARTS, seconds: float = 30.0) -> dict:
    """Write the parts one after another (each ~``seconds``, cut on its own bar line); return the truth."""
    from builders.sample.music import synthesize, write_mp3

    specs, chunks, changes, downbeats, t = _specs(), [], [], [], 0.0
    for i, name in enumerate(parts):
        spec = replace(specs[name], seed=specs[name].seed * 7 + i)  # a repeat is the same part, not the same audio
        bar = 60.0 / spec.tempo * spec.beats_per_bar
        duration = round(seconds / bar) * bar
        audio, truth = synthesize(spec, duration=duration, sr=SR)
        chunks.append(audio)
        downbeats += [t + d for d in truth["downbeats"]]
        t += duration
        changes.append(t)
    write_mp3(path, np.concatenate(chunks), SR)
    return {"changes": changes[:-1], "downbeats": downbeats, "duration": t, "parts": parts}


@pytest.fixture(scope="module")
def song3(tmp_path_factory) -> tuple[Path, dict]:
    path = tmp_path_factory.mktemp("songs") / "three-minutes.mp3"
    return path, assemble_song(path)


@pytest.fixture(scope="module")
def run(inference_runs) -> Path:
    return inference_runs.stage2("1+2+3+4")


def _invoke(*args):
    return CliRunner().invoke(app, ["describe", *map(str, args)])


@pytest.fixture(scope="module")
def whole(song3, run, tmp_path_factory):
    """The command on the 3-minute song with the tiny model: (script, CLI result, seconds)."""
    path, _ = song3
    out = tmp_path_factory.mktemp("script") / "script.json"
    started = time.perf_counter()
    result = _invoke(path, "--model", run, "--whole-song", "-o", out, "--genre", "pop", "--mv-type", "Lyric Video",
                     "--lyrics-understanding", "a song about night drives", *SHORT)
    seconds = time.perf_counter() - started
    assert result.exit_code == 0, result.output
    print(f"\nwhole-song describe of a {S.clock(song3[1]['duration'])} song on the tiny model: {seconds:.1f} s")
    return SongScript.model_validate_json(out.read_text(encoding="utf-8")), result, seconds


def _near(t: float, points) -> float:
    points = np.asarray(points, dtype=float)
    return float(np.min(np.abs(points - t))) if points.size else np.inf


def _assert_tiles(shots, duration: float) -> None:
    assert shots[0].start == 0.0
    assert shots[-1].end == pytest.approx(duration, abs=1e-3)
    for a, b in zip(shots[:-1], shots[1:]):
        assert a.end == b.start, f"gap or overlap between {a} and {b}"
    assert all(s.end > s.start for s in shots)


# --------------------------------------------------------------------------- the command on a 3-minute song


def test_whole_song_script_is_written_and_printed(whole, song3, run):
    script, result, _ = whole
    assert script.source == song3[0].name and script.schema_version == "1.2" and script.model == run.name
    assert script.facts.duration == pytest.approx(song3[1]["duration"], abs=0.1)
    assert "# MV script: three-minutes.mp3" in result.stdout and "**Shots:**" in result.stdout
    assert "MV script written to" in result.output and "describing windows" in result.output
    # fixed for the song, not per window
    assert script.mv_type == "Lyric Video" and script.genres == ["pop"]
    assert script.lyrics_understanding == "a song about night drives"
    _assert_tiles(script.shots, script.facts.duration)


def test_measured_facts_match_the_truth(whole, song3):
    facts, truth = whole[0].facts, song3[1]
    assert facts.beats_per_bar == 4
    assert facts.tempo == pytest.approx(120.0, rel=0.03)  # the part most of the song is in
    found = np.mean([_near(t, facts.downbeats) <= 0.07 for t in truth["downbeats"]])
    print(f"\ntrue downbeats with a detected downbeat within 70 ms: {found:.0%}")
    assert found >= 0.9
    assert facts.chords and facts.chords[-1].end == pytest.approx(facts.duration, abs=0.15)


def test_sections_start_at_the_true_changes(whole, song3):
    script, truth = whole[0], song3[1]
    starts = [s.start for s in script.sections[1:]]
    hits = [_near(t, starts) <= SECTION_TOLERANCE for t in truth["changes"]]
    figure = float(np.mean(hits))
    print(f"\nsections {[(s.start, s.label) for s in script.sections]}; true changes {truth['changes']}: "
          f"{sum(hits)}/{len(hits)} = {figure:.0%} within {SECTION_TOLERANCE:g} s")
    assert figure >= 0.6
    for s in starts:  # every boundary is a downbeat
        assert _near(s, script.facts.downbeats) <= TOLERANCE
    assert script.sections[0].start == 0 and script.sections[-1].end == script.facts.duration
    assert len({s.label for s in script.sections}) < len(script.sections)  # repeats share a label


def test_windows_start_on_sections_and_downbeats(whole):
    script = whole[0]
    section_starts = {s.start for s in script.sections}
    for w in script.windows:
        assert w.end - w.start == pytest.approx(CLIP_SECONDS)
        assert w.end <= script.facts.duration + 1e-6  # whole windows: no padding in a long song
        assert w.start == 0 or _near(w.start, script.facts.downbeats) <= TOLERANCE
    assert section_starts <= {w.start for w in script.windows} | {s.start for s in script.sections
                                                                  if s.start > script.facts.duration - CLIP_SECONDS}


def test_tiny_model_text_without_breakdown_is_one_shot_per_window(whole):
    script, result, _ = whole
    # the tiny model writes no frame-by-frame breakdown: one shot of raw text per window, still on downbeats
    assert "gave no frame-by-frame breakdown" in result.output
    assert len(script.shots) <= len(script.windows)
    for shot in script.shots[1:]:
        assert _near(shot.start, script.facts.downbeats) <= TOLERANCE


# --------------------------------------------------------------------------- merging well-formed windows


class FakeDescriber:
    """Stands in for ``Describer``: records every row it is given, answers 15 frames per window."""

    inputs = "1+2+3+4"
    sample_rate = 16000

    def __init__(self, text=None):
        self.decoding = Decoding(batch_size=4)
        self.rows: list[dict] = []
        self.shapes: list[tuple] = []
        self.text = text
        self.processor = SimpleNamespace(waveform_features=self._features)

    def _features(self, waveform):
        self.shapes.append(waveform.shape)
        return np.zeros(1)

    def generate_with_stops(self, rows):
        out = []
        for row in rows:
            self.rows.append({k: v for k, v in row.items() if k not in ("input_features", "id")})
            n = len(self.rows)
            text = self.text or MVDescription(
                overview=f"Window {n} in one sentence.",
                beats=[MVBeat(title=f"Shot {j + 1}", text=f"window {n} frame {j + 1}") for j in range(15)]).render()
            out.append((text, False))
        return out


def test_merged_shots_tile_the_song_on_downbeats(whole, song3):
    facts, sections = whole[0].facts, whole[0].sections
    fake = FakeDescriber()
    notes: list[str] = []
    script = S.describe_song(fake, song3[0], facts, sections, genres=["pop"], mv_type="Lyric Video",
                             lyrics_understanding="night drives", notes=notes)
    _assert_tiles(script.shots, facts.duration)
    inner = [s.start for s in script.shots[1:]]
    worst = max(_near(t, facts.downbeats) for t in inner)
    print(f"\n{len(script.shots)} shots from {len(script.windows)} windows; worst boundary-to-downbeat "
          f"distance {worst * 1000:.1f} ms")
    assert worst <= TOLERANCE
    assert len(script.shots) >= 0.6 * facts.duration / 2.4  # about one shot per 2 s frame (bars are 1.9-2.4 s)
    # the same row for every window (only the audio differs), and every window heard a whole 30 s
    assert len(fake.rows) == len(script.windows) and all(r == fake.rows[0] for r in fake.rows)
    assert fake.rows[0]["mv_type"] == "Lyric Video" and fake.rows[0]["genres"] == ["pop"]
    assert all(shape[-1] == CLIP_SECONDS * fake.sample_rate for shape in fake.shapes)
    assert script.overview == "Window 1 in one sentence."
    # each shot's text comes from the window responsible for that time, and its section is the one it starts in
    for shot in script.shots:
        section = next(s for s in script.sections if s.start <= shot.start < s.end)
        assert shot.section == section.label
        assert shot.title.startswith("Shot ")
    assert not notes


def test_unparseable_windows_become_one_shot_each(whole, song3):
    facts, sections = whole[0].facts, whole[0].sections
    fake = FakeDescriber(text="just some words, no structure at all")
    notes: list[str] = []
    script = S.describe_song(fake, song3[0], facts, sections, notes=notes)
    assert len(script.shots) == len(script.windows)
    assert all(s.text == "just some words, no structure at all" for s in script.shots)
    _assert_tiles(script.shots, facts.duration)
    assert any("no frame-by-frame breakdown" in n for n in notes)


# --------------------------------------------------------------------------- grids, windows, fallbacks


def _facts(duration, downbeats=(), tempo=0.0, meter=0):
    return SongFacts(duration=duration, tempo=tempo, beats_per_bar=meter, key="C major", downbeats=list(downbeats))


def _frames_text(n=15):
    return MVDescription(overview="o", beats=[MVBeat(title=f"F{j}", text=f"frame {j}") for j in range(n)]).render()


@pytest.mark.parametrize("tempo, meter, bar, source", [(120.0, 4, 2.0, "tempo"), (90.0, 3, 2.0, "tempo"),
                                                       (100.0, 0, 2.4, "tempo"), (0.0, 0, 2.0, "steps")])
def test_without_downbeats_shots_lie_on_a_regular_grid(tempo, meter, bar, source):
    facts = _facts(95.0, tempo=tempo, meter=meter)
    grid = S.bar_grid(facts)
    assert grid.source == source and grid.bar == pytest.approx(bar, abs=0.01)
    sections = [SongSection(start=0.0, end=95.0, label="A")]
    plans = S.plan_windows(facts, sections, grid)
    _, shots = S.merge_windows(facts, sections, plans, [_frames_text()] * len(plans), grid)
    _assert_tiles(shots, 95.0)
    for shot in shots[1:]:
        assert _near(shot.start, grid.points) <= 1e-3


def test_a_song_without_downbeats_is_measured_and_planned_on_steps():
    from builders.song import SongAnalyzer

    facts, sections = SongAnalyzer().measure(np.zeros(int(36 * SR), dtype=np.float32))  # silence: nothing to track
    assert (facts.tempo, facts.beats_per_bar, facts.downbeats, facts.key) == (0.0, 0, [], "unknown")
    assert [(s.start, s.end) for s in sections] == [(0.0, 36.0)]
    grid = S.bar_grid(facts)
    assert grid.source == "steps"
    plans = S.plan_windows(facts, sections, grid)
    assert [(p.start, p.span_start, p.span_end) for p in plans] == [(0.0, 0.0, 36.0)]  # 36 s < 1.25 windows
    _, shots = S.merge_windows(facts, sections, plans, [_frames_text()], grid)
    _assert_tiles(shots, 36.0)
    assert all(_near(s.start, np.arange(0.0, 36.0, 2.0)) < 1e-6 for s in shots)


def test_grid_edges_and_holes():
    downbeats = [0.3, *np.arange(2.3, 40, 2.0), *np.arange(60.3, 79, 2.0), 79.8]
    grid = S.bar_grid(_facts(80.0, downbeats, 120.0, 4))
    assert grid.points[0] == 0 and grid.points[-1] == 80.0
    assert 0.3 not in grid.points and 79.8 not in grid.points  # slivers at the ends join their neighbours
    assert max(np.diff(grid.points)) <= 2.5 * 2.0 + 1e-6  # the 20 s hole is filled at the median bar
    assert grid.source == "downbeats"


def test_plan_windows_split_long_sections_and_keep_windows_whole():
    downbeats = np.arange(2.0, 100.0, 2.0)
    facts = _facts(100.0, downbeats, 120.0, 4)
    sections = [SongSection(start=0.0, end=10.0, label="A"), SongSection(start=10.0, end=76.0, label="B"),
                SongSection(start=76.0, end=100.0, label="A")]
    plans = S.plan_windows(facts, sections)
    assert [p.span_start for p in plans] == [0.0, 10.0, 42.0, 76.0]  # 66 s of B: two spans of 33 s
    assert [p.span_end for p in plans][:-1] == [p.span_start for p in plans][1:] and plans[-1].span_end == 100.0
    assert all(p.start + p.seconds <= 100.0 for p in plans)
    assert plans[-1].start == 70.0 and plans[-1].section == "A"  # moved back to stay whole, on a downbeat


def test_a_long_span_stretches_its_frames():
    facts = _facts(37.0, np.arange(2.0, 37.0, 2.0), 120.0, 4)
    sections = [SongSection(start=0.0, end=37.0, label="A")]
    plans = S.plan_windows(facts, sections)  # 37 s < 1.25 windows: one window, its frames stretched to 37 s
    assert len(plans) == 1 and plans[0].start == 0.0
    _, shots = S.merge_windows(facts, sections, plans, [_frames_text()])
    _assert_tiles(shots, 37.0)
    assert shots[-1].title == "F14"
    assert S.merge_windows(facts, sections, plans, [_frames_text(3)])[1][-1].end == 37.0  # cut-off text: last runs on


def test_sections_are_normalised():
    out = S.normalise_sections([SongSection(start=5.0, end=20.0, label="B"),
                                SongSection(start=22.0, end=50.0, label="A")], 60.0)
    assert [(s.start, s.end, s.label) for s in out] == [(0.0, 20.0, "B"), (20.0, 60.0, "A")]


def test_check_duration_message():
    S.check_duration(59.0, 1)
    S.check_duration(3600.0, None)
    with pytest.raises(S.SongTooLongError, match="longer than --max-minutes 1"):
        S.check_duration(61.0, 1)


# --------------------------------------------------------------------------- limits and bad input


def test_a_short_song_is_one_padded_window(run, tmp_path):
    from builders.sample.music import synthesize, write_mp3

    audio, _ = synthesize(_specs()["A"], duration=20.0, sr=SR)
    write_mp3(tmp_path / "short.mp3", audio, SR)
    out = tmp_path / "short.json"
    result = _invoke(tmp_path / "short.mp3", "--model", run, "--whole-song", "-o", out, *SHORT)
    assert result.exit_code == 0, result.output
    script = SongScript.model_validate_json(out.read_text(encoding="utf-8"))
    assert [(w.start, w.end) for w in script.windows] == [(0.0, CLIP_SECONDS)]
    _assert_tiles(script.shots, script.facts.duration)
    assert script.facts.duration == pytest.approx(20.0, abs=0.05)
    assert "zero-padded" in result.output


def test_max_minutes_refuses_before_any_work(song3, run, tmp_path, monkeypatch):
    import builders.song

    def boom(*args, **kwargs):
        raise AssertionError("measured a song that should have been refused")

    monkeypatch.setattr(builders.song.SongAnalyzer, "__init__", boom)
    started = time.perf_counter()
    result = _invoke(song3[0], "--model", run, "--whole-song", "--max-minutes", "1", "-o", tmp_path / "x.json")
    assert result.exit_code == 2, result.output
    assert "longer than --max-minutes 1" in result.output and "three-minutes.mp3" in result.output
    assert time.perf_counter() - started < 10 and not (tmp_path / "x.json").exists()


def test_corrupt_or_missing_file_is_a_clear_error(run, tmp_path):
    corrupt = tmp_path / "corrupt.mp3"
    corrupt.write_bytes(b"ID3\x03\x00\x00\x00\x00\x00\x00" + bytes(range(256)) * 16)
    result = _invoke(corrupt, "--model", run, "--whole-song")
    assert result.exit_code == 2 and "cannot read audio" in result.output, result.output
    result = _invoke(tmp_path / "missing.mp3", "--model", run, "--whole-song")
    assert result.exit_code == 2 and "not found" in result.output


def test_output_never_overwrites_an_input_or_a_foreign_file(song3, run, tmp_path):
    result = _invoke(song3[0], "--model", run, "--whole-song", "-o", song3[0])
    assert result.exit_code == 2 and "is an input" in result.output
    notes = tmp_path / "notes.json"
    notes.write_text('{"mine": true}')
    result = _invoke(song3[0], "--model", run, "--whole-song", "-o", notes)
    assert result.exit_code == 2 and "not an MV script" in result.output
    assert notes.read_text() == '{"mine": true}'
    for extra in (["--dataset", tmp_path], ["--start", "10"]):
        assert _invoke(song3[0], "--model", run, "--whole-song", *extra).exit_code == 2


# --------------------------------------------------------------------------- a 10-minute song


@pytest.mark.slow
def test_ten_minute_song_in_bounded_memory(song3, run, tmp_path):
    """The whole command in its own process; its peak RSS (``wait4``) stays far below the song's naive cost."""
    import soundfile as sf

    from mv4all.audio import load_audio

    three = load_audio(song3[0], sr=SR)
    ten = tmp_path / "ten-minutes.flac"
    sf.write(ten, np.tile(three, 4)[: 600 * SR], SR, subtype="PCM_16")
    del three
    out = tmp_path / "ten.json"
    log = tmp_path / "log.txt"
    started = time.perf_counter()
    with log.open("w") as sink:
        proc = subprocess.Popen([sys.executable, "-m", "mv4all.cli", "describe", str(ten), "--model", str(run),
                                 "--whole-song", "-o", str(out), *SHORT], stdout=sink, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    assert os.waitstatus_to_exitcode(status) == 0, log.read_text()
    peak_mb = usage.ru_maxrss / 1024
    script = SongScript.model_validate_json(out.read_text(encoding="utf-8"))
    print(f"\n10-minute whole-song describe: {seconds:.1f} s, peak RSS {peak_mb:.0f} MB, "
          f"{len(script.windows)} windows, {len(script.sections)} sections")
    assert script.facts.duration == pytest.approx(600.0, abs=0.1)
    _assert_tiles(script.shots, 600.0)
    assert peak_mb < 2500


def test_script_json_round_trips(whole):
    script = whole[0]
    again = SongScript.model_validate(json.loads(script.model_dump_json()))
    assert again == script and again.render_markdown() == script.render_markdown()
