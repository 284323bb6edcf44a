"""Broken inputs become failure records with reasons; the rest of the build completes."""

import json

from builders.stages import StageResult
from tests.conftest import OfflineWrapper, _build, copy_corpus, copy_cpu_work


def _failures(build):
    return {f.id: f for f in build.result.failures}


def _ids(corpus):
    return sorted(p.stem for p in (corpus / "audios").glob("*.mp3"))


def test_corrupt_truncated_missing(mini_corpus, mini_build, tmp_path):
    corpus = copy_corpus(mini_corpus, tmp_path / "m4a")
    a, b, c, ok = _ids(corpus)
    (corpus / "audios" / f"{a}.mp3").write_bytes(b"ID3 this is not an mp3 at all" * 50)
    video = corpus / "videos" / f"{b}.mp4"
    video.write_bytes(video.read_bytes()[: video.stat().st_size // 2])
    (corpus / "lyrics" / f"{c}.txt").unlink()
    copy_cpu_work(mini_build.work, tmp_path / "work")
    build = _build(corpus, tmp_path)
    fails = _failures(build)
    assert fails[a].stage == "features" and fails[a].reason
    assert fails[b].stage == "frames" and fails[b].reason
    assert fails[c].stage == "lyrics_understanding" and "lyrics" in fails[c].reason
    mv_ids = {r["id"] for s in build.result.rows["mv_description"].values() for r in s}
    cap_ids = {r["id"] for s in build.result.rows["music_caption"].values() for r in s}
    assert mv_ids == {ok}
    assert cap_ids == {b, c, ok}  # a broken video or missing lyrics keep the music
    lines = [json.loads(x) for x in (build.out / "failures.jsonl").read_text().splitlines()]
    assert {x["id"] for x in lines} == {a, b, c}


def test_missing_metadata_row_and_zero_length_audio(mini_corpus, mini_build, tmp_path):
    corpus = copy_corpus(mini_corpus, tmp_path / "m4a")
    a, b, _, _ = _ids(corpus)
    meta = corpus / "id_metadata.csv"
    meta.write_text("".join(line for line in meta.read_text().splitlines(keepends=True) if not line.startswith(a)))
    (corpus / "audios" / f"{b}.mp3").write_bytes(b"")
    copy_cpu_work(mini_build.work, tmp_path / "work")
    build = _build(corpus, tmp_path)
    fails = _failures(build)
    assert fails[a].stage == "ingest" and "metadata" in fails[a].reason
    assert fails[b].stage == "features" and ("empty" in fails[b].reason or "0 samples" in fails[b].reason)
    assert build.result.count("mv_description") == 2


class ReversedHalfBackend(OfflineWrapper):
    """Answers like the offline backend but in reverse order, and only half a stage per run
    (like a batch that completes across two process runs)."""

    def __init__(self, first_run: bool):
        super().__init__()
        self.first_run = first_run

    def run(self, stage, inputs):
        results = list(reversed(self.inner.run(stage, inputs)))
        if self.first_run:
            results = results[: len(results) // 2]
        return results + [StageResult(clip_id="not-a-clip-0000", error="stray")]


def test_out_of_order_answers_across_two_runs(mini_corpus, mini_build, tmp_path):
    copy_cpu_work(mini_build.work, tmp_path / "work")
    from builders.config import BuildConfig
    from builders.pipeline import build

    cfg = BuildConfig(music4all=mini_corpus, out=tmp_path / "out", work_dir=tmp_path / "work")
    first = build(cfg, backend=ReversedHalfBackend(first_run=True), progress=False)
    assert any("no result" in f.reason for f in first.failures)
    second = build(cfg, backend=ReversedHalfBackend(first_run=False), progress=False)
    assert second.rows == mini_build.result.rows
    assert second.build_id == mini_build.result.build_id


def test_videos_in_other_containers_are_found(tmp_path):
    from builders.pipeline import find_video

    (tmp_path / ("a" * 16 + ".webm")).write_bytes(b"x")
    (tmp_path / ("b" * 16 + ".mp4")).write_bytes(b"x")
    (tmp_path / ("b" * 16 + ".mkv")).write_bytes(b"x")
    assert find_video(tmp_path, "a" * 16).suffix == ".webm"
    assert find_video(tmp_path, "b" * 16).suffix == ".mp4"  # the documented layout wins
    assert find_video(tmp_path, "c" * 16) is None


class FailingChunkBackend(OfflineWrapper):
    """The offline backend, two clips per call, whose second call of one stage raises (a dropped
    connection half-way through a stage)."""

    max_batch = 2

    def __init__(self, stage: str):
        super().__init__()
        self.stage, self.calls = stage, 0

    def run(self, stage, inputs):
        if stage.name == self.stage:
            self.calls += 1
            if self.calls == 2:
                raise ConnectionError("connection reset by peer")
        return self.inner.run(stage, inputs)


def test_backend_raising_mid_stage_fails_those_clips_and_a_rerun_resumes(mini_corpus, mini_build, tmp_path):
    from builders.config import BuildConfig
    from builders.pipeline import build

    copy_cpu_work(mini_build.work, tmp_path / "work")
    cfg = BuildConfig(music4all=mini_corpus, out=tmp_path / "out", work_dir=tmp_path / "work")
    first = build(cfg, backend=FailingChunkBackend("mv_type"), progress=False)
    hit = sorted(_ids(mini_corpus))[2:]  # the second chunk of two
    assert sorted(f.id for f in first.failures) == hit
    assert all(f.stage == "mv_type" and "connection reset by peer" in f.reason for f in first.failures)
    assert {r["id"] for s in first.rows["mv_description"].values() for r in s} == set(_ids(mini_corpus)) - set(hit)
    assert first.count("music_caption") == 4  # the stages before still finished for every clip
    failed = [json.loads(x)["id"] for x in (first.out / "failures.jsonl").read_text().splitlines()]
    assert sorted(failed) == hit
    second = build(cfg, progress=False)
    assert {s: n for s, n in second.computed.items() if n} == {"mv_type": 2, "unified_music_caption": 2,
                                                                "mv_description": 2}
    assert second.rows == mini_build.result.rows and second.build_id == mini_build.result.build_id
    assert not second.failures and not (first.out / "failures.jsonl").read_text().strip()
