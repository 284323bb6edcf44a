"""The one set of output rules (builders.checks.check_output): every rule can fail, directly,
through the pipeline (the clip is recorded as failed, with the reason) and through the OpenAI
backend (the model is re-asked with the reason)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from pydantic import BaseModel

from builders.checks import MAX_LYRIC_RUN, InvalidOutput, check_output
from builders.llm.client import Answer
from builders.stages import (
    FRAME_CAPTIONS,
    LLM_STAGES,
    LYRICS_UNDERSTANDING,
    MUSIC_CAPTION,
    MV_DESCRIPTION,
    MV_TYPE,
    STAGES_BY_NAME,
    UNIFIED_MUSIC_CAPTION,
    Stage,
    StageInput,
)
from builders.store import read_log
from builders.textcheck import longest_shared_run
from builders.video.records import FrameStats, VisualStats
from mv4all.schema import (
    FrameCaption,
    FrameCaptions,
    LyricsUnderstanding,
    MusicCaption,
    MVBeat,
    MVDescription,
    MVTypeTag,
    Track,
    UnifiedMusicCaption,
)
from tests.conftest import OfflineWrapper, _build, copy_cpu_work

CID = "C" * 16
N = 3
TIMES = [1.0 + 2.0 * i for i in range(N)]  # measured times, unlike the 2 s fallback grid
LYRICS = ("we were dancing in the city lights until the morning came and took the summer of our lives "
          "away from every street we knew")
QUOTE = "In the song: " + " ".join(LYRICS.split()[:10]) + "."  # 10 consecutive lyric words
TRACK = Track(id=CID, artist="Band", song="Song", lang="en")
INSTRUMENTAL = Track(id=CID, artist="Band", song="Song", lang="INTRUMENTAL")


def _visual(n: int = N) -> VisualStats:
    frame = dict(mean_rgb=[10.0, 20.0, 30.0], brightness=20.0, saturation=0.2, colours=["blue"], motion=2.0,
                 cut_before=False, faces=0, text_overlay=False, edge_density=0.1)
    return VisualStats(width=64, height=36, fps=25.0, duration=30.0, static_score=2.0, shot_count=1, zoom_pan=False,
                       frames=[FrameStats(t=TIMES[i], **frame) for i in range(n)])


@pytest.fixture
def clip(tmp_path) -> StageInput:
    """A whole clip's input: 3 frames (JPEG files), lyrics and every upstream output."""
    images = []
    for i in range(N):
        path = tmp_path / f"{i:02d}.jpg"
        cv2.imwrite(str(path), np.full((36, 64, 3), 60 * i, np.uint8))
        images.append(str(path))
    return StageInput(clip_id=CID, track=TRACK, visual=_visual(), frame_images=images, lyrics=LYRICS,
                      music_caption="A slow waltz.", lyrics_understanding="About a summer that ended.",
                      frame_captions=_captions().captions, mv_type="Lyric Video",
                      unified_music_caption="A slow waltz about a summer that ended.")


def _captions(times=TIMES, texts=None) -> FrameCaptions:
    texts = texts or [f"A street at night, shot {i + 1}." for i in range(len(times))]
    return FrameCaptions(captions=[FrameCaption(t=t, caption=c) for t, c in zip(times, texts)])


def _description(n: int = N, overview: str = "A night walk through the city.", title: str = "Street") -> MVDescription:
    return MVDescription(overview=overview, beats=[MVBeat(title=title if i == 1 else f"Moment {i + 1}",
                                                          text=f"Scene {i + 1} follows the beat.") for i in range(n)])


VALID = {
    "music_caption": MusicCaption(caption="A slow waltz in G minor."),
    "lyrics_understanding": LyricsUnderstanding(text="The song remembers a summer that ended."),
    "frame_captions": _captions(),
    "mv_type": MVTypeTag(mv_type="Lyric Video"),
    "unified_music_caption": UnifiedMusicCaption(caption="A slow waltz about a summer that ended."),
    "mv_description": _description(),
}

# (rule, stage, broken output, what the error says)
BROKEN = [
    ("caption count", FRAME_CAPTIONS, _captions(TIMES[:2]), "2 captions for 3 frames; return exactly 3 captions"),
    ("caption time", FRAME_CAPTIONS, _captions([TIMES[0], TIMES[1] + 1.0, TIMES[2]]),
     "item 2 of captions is at t=4.00s but frame 2 is at t=3.00s"),
    ("beat count", MV_DESCRIPTION, _description(N + 1), "4 beats for 3 frames; return exactly 3 beats"),
    ("lyric quote", LYRICS_UNDERSTANDING, LyricsUnderstanding(text=QUOTE),
     f"it quotes 10 consecutive words of the lyrics (at most {MAX_LYRIC_RUN}); paraphrase instead"),
    ("empty text", MUSIC_CAPTION, MusicCaption(caption="  "), "an empty text field (caption)"),
    ("empty lyric understanding", LYRICS_UNDERSTANDING, LyricsUnderstanding(text=""), "an empty text field (text)"),
    ("empty frame caption", FRAME_CAPTIONS, _captions(texts=["One.", "", "Three."]),
     "an empty text field (captions[1].caption)"),
    ("empty beat title", MV_DESCRIPTION, _description(title=" "), "an empty text field (beats[1].title)"),
    ("mv type", MV_TYPE, MVTypeTag.model_construct(mv_type="Documentary"), "'Documentary' is not an MV type"),
    ("round trip", MV_DESCRIPTION, _description(overview="A night walk.\n\nThen a dawn."),
     "the rendered MV description does not parse back to itself"),
    ("output type", UNIFIED_MUSIC_CAPTION, MusicCaption(caption="A waltz."),
     "not a UnifiedMusicCaption but a MusicCaption"),
]


# ---------------------------------------------------------------------------- the rules


def test_stages_say_what_they_hand_on_and_what_is_per_frame():
    for stage in LLM_STAGES:
        fields = stage.output_model.model_fields
        if stage.output_field is not None:
            assert stage.output_field in fields and stage.name in StageInput.model_fields, stage.name
        if stage.per_frame is not None:
            assert fields[stage.per_frame].annotation.__origin__ is list, stage.name
    assert {s.name for s in LLM_STAGES if s.per_frame} == {"frame_captions", "mv_description"}
    assert [s.name for s in LLM_STAGES if "music_caption" in s.configs] == ["music_caption"]
    assert FRAME_CAPTIONS.handoff(VALID["frame_captions"]) == VALID["frame_captions"].captions
    assert MV_TYPE.handoff(None) is None and MV_DESCRIPTION.handoff(VALID["mv_description"]) is None


def test_valid_outputs_pass(clip):
    for name, output in VALID.items():
        check_output(STAGES_BY_NAME[name], output, clip)


@pytest.mark.parametrize("rule,stage,output,message", BROKEN, ids=[b[0] for b in BROKEN])
def test_each_rule_fails(clip, rule, stage, output, message):
    with pytest.raises(InvalidOutput) as err:
        check_output(stage, output, clip)
    assert message in str(err.value)


def test_a_song_without_lyrics_may_have_an_empty_understanding(clip):
    empty = LyricsUnderstanding(text="")
    for inp in (clip.model_copy(update={"lyrics": ""}), clip.model_copy(update={"track": INSTRUMENTAL})):
        check_output(LYRICS_UNDERSTANDING, empty, inp)
    with pytest.raises(InvalidOutput, match="empty text"):  # only that stage, only that field
        check_output(MUSIC_CAPTION, MusicCaption(caption=""), clip.model_copy(update={"lyrics": ""}))


class _Optional(BaseModel):
    text: str
    note: str = ""  # optional in the contract: may be empty


def test_only_required_text_must_not_be_empty():
    stage = Stage(name="x", version=1, output_model=_Optional, reads=frozenset(), depends_on=(), modality="text",
                  output_field="text")
    check_output(stage, _Optional(text="Something."), StageInput(clip_id=CID))
    with pytest.raises(InvalidOutput, match=r"an empty text field \(text\)"):
        check_output(stage, _Optional(text=" ", note="A note."), StageInput(clip_id=CID))


def test_checks_read_only_what_the_stage_reads(clip):
    # the music caption cannot see the lyrics, so it cannot be blamed for sharing words with them
    check_output(MUSIC_CAPTION, MusicCaption(caption=QUOTE), clip)
    # without measured frame times (no visual) only the count is checked
    shifted = _captions([t + 1.0 for t in TIMES])
    check_output(FRAME_CAPTIONS, shifted, clip.model_copy(update={"visual": None}))
    with pytest.raises(InvalidOutput, match="t=2.00s but frame 1 is at t=1.00s"):
        check_output(FRAME_CAPTIONS, shifted, clip)


# ---------------------------------------------------------------------------- through the OpenAI backend


class ScriptedClient:
    """Answers requests with the given contents, in order, and keeps every request."""

    def __init__(self, contents: list[str]):
        self.contents, self.requests = list(contents), []

    def complete(self, req) -> Answer:
        self.requests.append(req)
        return Answer(content=self.contents.pop(0), model="scripted-model", input_tokens=10, output_tokens=5,
                      structured="json_schema", finish_reason="stop")


def _openai(tmp_path: Path, contents: list[str], **options):
    from builders.llm.openai_backend import OpenAIBackend

    backend = OpenAIBackend(base_url="http://127.0.0.1:9/v1", cache_dir=str(tmp_path / "cache"), cache=False,
                            max_reasks=1, **options)
    client = ScriptedClient(contents)
    backend.client = lambda: client
    return backend, client


def _json(output) -> str:
    return output.model_dump_json() if hasattr(output, "model_dump_json") else json.dumps(output)


def _last_user(req) -> str:
    return req.body["messages"][-1]["content"]


REASKED = [b for b in BROKEN if b[0] not in ("caption time", "mv type", "output type")]


@pytest.mark.parametrize("rule,stage,output,message", REASKED, ids=[b[0] for b in REASKED])
def test_openai_reasks_with_the_reason(clip, tmp_path, rule, stage, output, message):
    good = VALID[stage.name]
    backend, client = _openai(tmp_path, [_json(output), _json(good)])
    (result,) = backend.run(stage, [clip])
    assert result.ok, result.error
    assert result.output == good
    first, second = client.requests
    assert message in _last_user(second)  # the re-ask says what was wrong
    assert second.body["messages"][-2] == {"role": "assistant", "content": _json(output)}
    assert backend.stats["reasks"] == 1


def test_openai_gives_up_with_the_last_reason(clip, tmp_path):
    bad = _json(LyricsUnderstanding(text=QUOTE))
    backend, client = _openai(tmp_path, [bad, bad])
    (result,) = backend.run(LYRICS_UNDERSTANDING, [clip])
    assert not result.ok and len(client.requests) == 2
    assert "no valid answer after 2 tries" in result.error and "consecutive words of the lyrics" in result.error


def test_openai_reasks_a_type_outside_the_ten(clip, tmp_path):
    backend, client = _openai(tmp_path, [json.dumps({"mv_type": "Documentary"}), _json(VALID["mv_type"])])
    (result,) = backend.run(MV_TYPE, [clip])
    assert result.ok and result.output == VALID["mv_type"]
    assert "does not match the MVTypeTag schema" in _last_user(client.requests[1])


def test_openai_sets_caption_times_instead_of_reasking(clip, tmp_path):
    backend, client = _openai(tmp_path, [_json(_captions([0.0, 0.0, 0.0]))])
    (result,) = backend.run(FRAME_CAPTIONS, [clip])
    assert result.ok and [c.t for c in result.output.captions] == TIMES and len(client.requests) == 1


def test_openai_checks_each_frame_of_a_per_frame_request(clip, tmp_path):
    one = [FrameCaption(t=0.0, caption=f"Frame {i + 1}.") for i in range(N)]
    contents = [_json(FrameCaption(t=0.0, caption=" ")), _json(one[0]), _json(one[1]), _json(one[2])]
    backend, client = _openai(tmp_path, contents, frames_mode="frame")
    (result,) = backend.run(FRAME_CAPTIONS, [clip])
    assert result.ok, result.error
    assert result.output == FrameCaptions(captions=[c.model_copy(update={"t": t}) for c, t in zip(one, TIMES)])
    assert len(client.requests) == N + 1 and "an empty text field" in _last_user(client.requests[1])


def test_openai_accepts_an_empty_understanding_of_an_instrumental(clip, tmp_path):
    backend, client = _openai(tmp_path, [_json(LyricsUnderstanding(text=""))])
    (result,) = backend.run(LYRICS_UNDERSTANDING, [clip.model_copy(update={"lyrics": "", "track": INSTRUMENTAL})])
    assert result.ok and result.output.text == "" and len(client.requests) == 1


# ---------------------------------------------------------------------------- through the pipeline


def _break(rule: str, output, inp: StageInput):
    """The offline answer, broken by ``rule`` (the same rules as BROKEN, on a real clip)."""
    if rule == "lyric quote":
        return LyricsUnderstanding(text="They sing: " + " ".join(inp.lyrics.split()[:12]))
    if rule == "empty text":
        return MusicCaption(caption=" ")
    if rule == "caption count":
        return FrameCaptions(captions=output.captions[:-1])
    if rule == "caption time":
        return FrameCaptions(captions=[c.model_copy(update={"t": c.t + 0.5}) for c in output.captions])
    if rule == "empty frame caption":
        return FrameCaptions(captions=[output.captions[0].model_copy(update={"caption": ""})] + output.captions[1:])
    if rule == "mv type":
        return MVTypeTag.model_construct(mv_type="Documentary")
    if rule == "beat count":
        return output.model_copy(update={"beats": output.beats[:-1]})
    if rule == "round trip":
        return output.model_copy(update={"overview": output.overview + "\n\nAnd then it ends."})
    if rule == "empty beat title":
        return output.model_copy(update={"beats": [output.beats[0].model_copy(update={"title": ""})]
                                         + output.beats[1:]})
    raise AssertionError(rule)


PIPELINE_RULES = {  # rule -> (stage, what the recorded reason says)
    "lyric quote": ("lyrics_understanding", "consecutive words of the lyrics (at most 8); paraphrase instead"),
    "empty text": ("music_caption", "an empty text field (caption)"),
    "caption count": ("frame_captions", "14 captions for 15 frames"),
    "caption time": ("frame_captions", "item 1 of captions is at"),
    "empty frame caption": ("frame_captions", "an empty text field (captions[0].caption)"),
    "mv type": ("mv_type", "'Documentary' is not an MV type"),
    "beat count": ("mv_description", "14 beats for 15 frames"),
    "round trip": ("mv_description", "the rendered MV description does not parse back to itself"),
    "empty beat title": ("mv_description", "an empty text field (beats[0].title)"),
}


class BreakingBackend(OfflineWrapper):
    """The offline backend, except that each rule breaks the answer of one clip (a different
    clip per rule) at that rule's stage."""

    def __init__(self, rules: list[str]):
        super().__init__()
        self.rules, self.broken = list(rules), {}

    def run(self, stage, inputs):
        results = self.inner.run(stage, inputs)
        by_id = {inp.clip_id: inp for inp in inputs}
        for rule in self.rules:
            if PIPELINE_RULES[rule][0] != stage.name or rule in self.broken:
                continue
            for res in sorted(results, key=lambda r: r.clip_id):
                if res.clip_id in self.broken.values() or not res.ok:
                    continue
                if rule == "lyric quote" and len((by_id[res.clip_id].lyrics or "").split()) < 12:
                    continue
                res.output = _break(rule, res.output, by_id[res.clip_id])
                self.broken[rule] = res.clip_id
                break
        return results


@pytest.mark.parametrize("rules", [
    ["lyric quote", "caption count", "mv type"],
    ["empty text", "caption time", "beat count"],
    ["empty frame caption", "round trip", "empty beat title"],
], ids=["lyrics-count-type", "empty-time-beats", "nested-roundtrip"])
def test_pipeline_records_each_broken_rule(mini_corpus, mini_build, tmp_path, rules):
    from builders.config import BuildConfig
    from builders.pipeline import build

    copy_cpu_work(mini_build.work, tmp_path / "work")
    backend = BreakingBackend(rules)
    cfg = BuildConfig(music4all=mini_corpus, out=tmp_path / "out", work_dir=tmp_path / "work")
    result = build(cfg, backend=backend, progress=False)
    assert set(backend.broken) == set(rules), backend.broken
    failures = {f.id: f for f in result.failures if f.kind == "error"}
    assert set(failures) == set(backend.broken.values())
    for rule, cid in backend.broken.items():
        stage, reason = PIPELINE_RULES[rule]
        assert failures[cid].stage == stage
        assert failures[cid].reason.startswith(f"invalid {stage} output: "), failures[cid].reason
        assert reason in failures[cid].reason, failures[cid].reason
    # a broken answer is not stored: the next run asks again, and the rest of the build is untouched
    kept = {r["id"] for split in result.rows["mv_description"].values() for r in split}
    assert kept == {r["id"] for split in mini_build.result.rows["mv_description"].values() for r in split} - set(
        failures)
    for rule, cid in backend.broken.items():
        assert not list((tmp_path / "work" / "stages" / PIPELINE_RULES[rule][0]).glob(f"*/{cid}.json"))


def test_a_stored_output_that_breaks_a_rule_is_answered_again(mini_corpus, mini_build, tmp_path):
    root = tmp_path / "b"
    copy_cpu_work(mini_build.work, root / "work")
    first = _build(mini_corpus, root)
    records = sorted((root / "work" / "stages" / "lyrics_understanding").glob("*/*.json"))
    record = next(r for r in records if len((mini_corpus / "lyrics" / f"{r.stem}.txt").read_text().split()) > 12)
    data = json.loads(record.read_text())
    original = dict(data["output"])
    lyrics = (mini_corpus / "lyrics" / f"{record.stem}.txt").read_text()
    data["output"]["text"] = " ".join(lyrics.split()[:12])  # as if stored under a looser rule
    assert longest_shared_run(data["output"]["text"], lyrics) > MAX_LYRIC_RUN
    record.write_text(json.dumps(data))
    again = _build(mini_corpus, root)
    stale = [e for e in read_log(root / "work") if e["event"] == "stale"]
    assert [(e["stage"], e["id"]) for e in stale] == [("lyrics_understanding", record.stem)]
    assert "consecutive words of the lyrics" in stale[0]["reason"]
    assert again.result.rows == first.result.rows and again.result.build_id == first.result.build_id
    assert json.loads(record.read_text())["output"] == original
