"""``mv4all storyboard``: one self-contained page, opened in a real headless browser (Debian's chromium).

The browser tests check what a reader gets: a page that is not blank, one card per shot, a click on a card
seeks the song, and no network request at all (only the file:// page itself and data: URIs). They skip only
when chromium is missing and cannot be installed (root + apt-get); ``make test`` installs it first.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from mv4all.cli import app
from mv4all.schema import Chord, Shot, SongFacts, SongScript, SongSection, SongWindow

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SCREENSHOT_DIR = Path(os.environ.get("MV4ALL_SCREENSHOT_DIR", tempfile.gettempdir()))
HOSTILE = '<script>window.pwned = 1</script> "quoted" & {{cards}} <img src="https://example.com/x.png">'


# --------------------------------------------------------------------------- inputs made in the test


def make_script(duration: float = 180.0) -> SongScript:
    """A 3-minute song at 120 BPM in 4/4 (a bar every 2 s): sections A B C B C D C, 4-bar shots."""
    bar = 2.0
    bounds = [0, 16, 48, 80, 112, 144, 164, duration]
    labels = ["A", "B", "C", "B", "C", "D", "C"]
    sections = [SongSection(start=s, end=e, label=lab) for s, e, lab in zip(bounds, bounds[1:], labels)]
    shots = []
    for sec in sections:
        t = sec.start
        while t < sec.end - 1e-9:
            end = min(t + 4 * bar, sec.end)
            n = len(shots) + 1
            text = (HOSTILE if n == 5 else
                    f"Shot {n}: the singer walks through a {['neon', 'rainy', 'golden'][n % 3]} street, "
                    f"the camera tracking at waist height as the {sec.label} section builds.")
            shots.append(Shot(start=t, end=end, section=sec.label, title=f"Shot {n}", text=text))
            t = end
    chords = [Chord(start=t, end=t + bar, label=["A:min", "F:maj", "C:maj", "G:maj"][i % 4])
              for i, t in enumerate(np.arange(0, duration, bar))]
    windows = [SongWindow(start=s.start, end=s.start + 30, section=s.label) for s in sections]
    return SongScript(source="song.mp3", model="runs/stage2-1+2+3+4",
                      facts=SongFacts(duration=duration, tempo=120.0, beats_per_bar=4, key="A minor",
                                      downbeats=[float(t) for t in np.arange(0, duration, bar)], chords=chords),
                      sections=sections, windows=windows, mv_type="Story Narrative", genres=["pop", "rock"],
                      lyrics_understanding="A night walk through the city, looking for someone.",
                      overview="A night-time city story in warm neon.\n\nThe chorus opens up into wide shots.",
                      shots=shots)


def write_song(path: Path, seconds: float, sr: int = 22050) -> Path:
    """A real, decodable song: a chord pad with a click on every beat (MP3 when libsndfile writes it)."""
    import soundfile as sf

    t = np.arange(int(seconds * sr)) / sr
    audio = 0.15 * (np.sin(2 * np.pi * 220 * t) + np.sin(2 * np.pi * 277.2 * t) + np.sin(2 * np.pi * 329.6 * t))
    audio[(t % 0.5) < 0.01] += 0.4
    if path.suffix == ".mp3" and "MP3" not in sf.available_formats():
        path = path.with_suffix(".wav")
    sf.write(path, audio.astype(np.float32), sr)
    return path


def run_cli(*args: str):
    return CliRunner().invoke(app, ["storyboard", *map(str, args)])


# --------------------------------------------------------------------------- the page itself (no browser)


def test_page_is_escaped_and_self_contained(tmp_path):
    from mv4all import storyboard as sb

    script = make_script()
    page = sb.page_from_script(script)
    page.title = HOSTILE
    page.audio = sb.audio_source(write_song(tmp_path / "song.mp3", 3.0), tmp_path / "page.html")
    text = sb.render(page)
    assert text.count('<article class="card"') == len(script.shots)
    assert "window.pwned" in text and "<script>window.pwned" not in text  # model text is shown, escaped
    assert text.count("<script>") == 1 and "{{cards}}" in text  # our one script; placeholders filled in one pass
    assert "&lt;img src=&quot;https://example.com/x.png&quot;&gt;" in text
    assert all(src.startswith("data:") for src in re.findall(r'\bsrc="([^"]*)"', text))
    assert not re.search(r'(?:src|href)="(?:https?:)?//', text)
    assert "default-src 'none'" in text and "media-src data:;" in text  # the page forbids any other source
    assert text.count('class="seg section"') == len(script.sections)
    assert text.count('class="tick down"') == len(script.facts.downbeats)


def test_large_audio_is_linked_by_relative_path(tmp_path):
    from mv4all import storyboard as sb

    (tmp_path / "audio").mkdir()
    song = write_song(tmp_path / "audio" / "song.wav", 1.0)
    audio = sb.audio_source(song, tmp_path / "pages" / "page.html", max_mb=0.0)
    assert not audio.embedded and audio.src == "../audio/song.wav" and "relative to the page" in audio.note
    page = sb.page_from_script(make_script(60.0))
    page.audio = audio
    assert "media-src data: 'self' file:" in sb.render(page)


def test_cli_refuses_bad_input(tmp_path):
    (tmp_path / "bad.json").write_text('{"source": "x"}')
    for args, message in (([], "either a script JSON or --dataset"),
                          ([tmp_path / "bad.json", "--dataset", tmp_path], "either a script JSON or --dataset"),
                          (["--dataset", tmp_path], "--dataset needs --id"),
                          ([tmp_path / "missing.json"], "script not found"),
                          ([tmp_path / "bad.json"], "is not a whole-song MV script")):
        res = run_cli(*args, "-o", tmp_path / "page.html")
        assert res.exit_code == 2, res.output
        assert message in res.output and "Traceback" not in res.output


# --------------------------------------------------------------------------- a real browser


def _chromium() -> str | None:
    """Debian's chromium, installed when missing and we can (root + apt-get); None when it cannot be."""
    found = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return None
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "install", "-y", "-qq", "chromium"], ["apt-get", "update", "-qq"],
                ["apt-get", "install", "-y", "-qq", "chromium"]):
        try:
            subprocess.run(cmd, env=env, capture_output=True, timeout=900, check=False)
        except (OSError, subprocess.TimeoutExpired):
            return None
        if shutil.which("chromium"):
            return shutil.which("chromium")
    return None


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """A fresh headless chromium profile (Playwright drives the system chromium: no browser download)."""
    executable = _chromium()
    if executable is None:
        pytest.skip("Debian's chromium is not installed and cannot be installed here (needs root and apt-get "
                    "reaching Debian's mirror): the storyboard page was not opened in a browser")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")), executable_path=executable, headless=True,
            args=CHROMIUM_ARGS, viewport={"width": 1280, "height": 900})
        try:
            yield context
        finally:
            context.close()


def open_page(context, path: Path):
    """Open ``path``, recording every request and every script error or console error."""
    page = context.new_page()
    seen: dict[str, list[str]] = {"requests": [], "errors": []}
    page.on("request", lambda r: seen["requests"].append(r.url))
    page.on("pageerror", lambda e: seen["errors"].append(str(e)))
    page.on("console", lambda m: seen["errors"].append(m.text) if m.type == "error" else None)
    page.goto(path.resolve().as_uri(), wait_until="load")
    return page, seen


def assert_offline(path: Path, seen: dict) -> None:
    own = path.resolve().as_uri()
    others = [u for u in seen["requests"] if u != own and not u.startswith("data:")]
    assert not others, f"the page made network requests: {others}"
    assert not seen["errors"], seen["errors"]


def screenshot_stats(png: bytes) -> tuple[float, int]:
    import cv2

    image = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
    return float(image.std()), len(np.unique(image.reshape(-1, 3)[::7], axis=0))


def test_script_page_in_browser(browser, tmp_path):
    script = make_script()
    (tmp_path / "script.json").write_text(script.model_dump_json(indent=2))
    song = write_song(tmp_path / "song.mp3", script.facts.duration)
    started = time.perf_counter()
    res = run_cli(tmp_path / "script.json", "--audio", song, "-o", tmp_path / "page.html")
    elapsed = time.perf_counter() - started
    assert res.exit_code == 0, res.output
    out = tmp_path / "page.html"
    assert "with audio embedded" in res.output and elapsed < 30
    print(f"storyboard: {len(script.shots)} shots, 3-min song, {out.stat().st_size / 1024:.0f} KB, {elapsed:.2f} s")

    page, seen = open_page(browser, out)
    assert page.locator(".card").count() == len(script.shots)
    assert page.evaluate("window.pwned") is None  # model text stayed text
    page.wait_for_function("document.getElementById('song').readyState >= 1", timeout=15000)
    assert abs(page.evaluate("document.getElementById('song').duration") - script.facts.duration) < 1.0
    shot = script.shots[12]
    page.locator(".card").nth(12).click()
    now = page.evaluate("document.getElementById('song').currentTime")
    page.evaluate("document.getElementById('song').pause()")
    assert abs(now - shot.start) < 0.5, (now, shot.start)
    assert page.locator(".card.active").count() == 1 and page.locator("#playhead").is_visible()
    png = page.screenshot(full_page=True)
    (SCREENSHOT_DIR / "storyboard.png").write_bytes(png)
    std, colours = screenshot_stats(png)
    assert std > 10 and colours > 20, (std, colours)
    assert_offline(out, seen)
    page.close()

    # audio over the embedding limit: linked by a relative path, which the page's policy lets play (local file)
    (tmp_path / "pages").mkdir()
    linked = tmp_path / "pages" / "linked.html"
    res = run_cli(tmp_path / "script.json", "--audio", song, "--max-audio-mb", "0", "-o", linked)
    assert res.exit_code == 0 and "relative path" in res.output, res.output
    page, seen = open_page(browser, linked)
    page.wait_for_function("document.getElementById('song').readyState >= 1", timeout=15000)
    assert set(seen["requests"]) <= {linked.resolve().as_uri(), song.resolve().as_uri()}, seen["requests"]
    page.close()


def test_dataset_row_page_in_browser(browser, sample_build, tmp_path):
    from mv4all import storyboard as sb
    from mv4all.data import load_split

    row = load_split(sample_build.out, "mv_description", "test")[0]
    clip = row["id"]
    n_cards = max(len(row["mv_description"]["beats"]), len(row["frame_captions"]))
    files, where = sb.find_frames(sample_build.out, clip)  # work/ beside the dataset, key from build_info.json
    assert files and Path(where).parent.parent == sample_build.work / "frames"
    out = tmp_path / "row.html"
    started = time.perf_counter()
    res = run_cli("--dataset", sample_build.out, "--id", clip, "--audio-root", sample_build.corpus, "-o", out)
    elapsed = time.perf_counter() - started
    assert res.exit_code == 0, res.output
    text = out.read_text()
    assert text.count('<img src="data:image/jpeg;base64,') == len(files)
    assert row["frame_captions"][0]["caption"][:40] in text.replace("&#x27;", "'").replace("&quot;", '"')
    print(f"storyboard row {clip}: {len(files)} frames, {out.stat().st_size / 1024:.0f} KB, {elapsed:.2f} s")

    page, seen = open_page(browser, out)
    assert page.locator(".card").count() == n_cards
    assert page.locator(".card img").count() == len(files)
    page.wait_for_function("Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)",
                           timeout=15000)
    page.wait_for_function("document.getElementById('song').readyState >= 1", timeout=15000)
    page.locator(".card").nth(3).click()
    now = page.evaluate("document.getElementById('song').currentTime")
    page.evaluate("document.getElementById('song').pause()")
    assert abs(now - row["frame_captions"][3]["t"]) < 0.5
    png = page.screenshot(full_page=True)
    (SCREENSHOT_DIR / "storyboard-row.png").write_bytes(png)
    assert screenshot_stats(png)[0] > 10
    assert_offline(out, seen)
    page.close()


def test_dataset_row_frames_fallbacks(sample_build, tmp_path):
    from mv4all.data import load_split

    clip = load_split(sample_build.out, "mv_description", "train")[0]["id"]
    empty = tmp_path / "empty-work"
    empty.mkdir()
    # no stored frames: decoded from the video at the build's 2 s step
    res = run_cli("--dataset", sample_build.out, "--id", clip, "--work", empty, "--videos",
                  sample_build.corpus / "videos", "-o", tmp_path / "decoded.html")
    assert res.exit_code == 0, res.output
    assert (tmp_path / "decoded.html").read_text().count('<img src="data:image/jpeg') == 15
    # nothing to show: the captions alone, and the page says so
    res = run_cli("--dataset", sample_build.out, "--id", clip, "--work", empty, "-o", tmp_path / "bare.html")
    assert res.exit_code == 0 and "not found" in res.output
    bare = (tmp_path / "bare.html").read_text()
    assert "<img" not in bare and "showing the frame captions only" in bare and "No audio" in bare
    # --frames: the clip's own folder
    stored = next((sample_build.work / "frames").glob(f"*/{clip}"))
    res = run_cli("--dataset", sample_build.out, "--id", clip, "--frames", stored, "-o", tmp_path / "given.html")
    assert res.exit_code == 0 and (tmp_path / "given.html").read_text().count("<img ") == 15
    # an id that is not a row
    res = run_cli("--dataset", sample_build.out, "--id", "no-such-clip", "-o", tmp_path / "x.html")
    assert res.exit_code == 2 and "not a row" in res.output
