from builders.stages import LLM_STAGES, MUSIC_CAPTION, STAGES_BY_NAME, StageInput, params_hash
from mv4all.schema import Track

FORBIDDEN_FOR_MUSIC_CAPTION = {"visual", "frame_images", "frame_captions", "lyrics", "lyrics_understanding", "mv_type"}


def test_music_caption_reads_music_and_metadata_only():
    assert MUSIC_CAPTION.reads == {"track", "music_features"}
    assert not (MUSIC_CAPTION.reads & FORBIDDEN_FOR_MUSIC_CAPTION)


def test_restrict_drops_unreadable_fields():
    full = StageInput(clip_id="x" * 16, track=Track(id="x" * 16, artist="a", song="s"), lyrics="secret words")
    restricted = MUSIC_CAPTION.restrict(full)
    assert restricted.lyrics is None and restricted.track is not None


def test_stage_reads_are_stage_input_fields():
    for stage in LLM_STAGES:
        assert stage.reads <= set(StageInput.model_fields) - {"clip_id"}
    assert set(STAGES_BY_NAME) == {s.name for s in LLM_STAGES}


def test_params_hash_stable_and_sensitive():
    assert params_hash({"a": 1, "b": [1, 2]}) == params_hash({"b": [1, 2], "a": 1})
    assert params_hash({"a": 1}) != params_hash({"a": 2})
