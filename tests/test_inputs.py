import pytest

from mv4all.inputs import (
    AUDIO_PLACEHOLDER,
    CAPTION_INSTRUCTION,
    MV_INSTRUCTION,
    TABLE1_COMBINATIONS,
    all_combinations,
    parse_combination,
    render_prompt,
)

ROW = {"genres": ["synthpop", "dance"], "mv_type": "Lyric Video", "lyrics_understanding": "Longing after a breakup."}


def test_instructions_exact():
    assert MV_INSTRUCTION.startswith("Generate a concise video prompt that captures the essence of the MV")
    assert MV_INSTRUCTION.endswith("guiding a text-to-video model.")
    assert CAPTION_INSTRUCTION == "Describe the music in detail."


@pytest.mark.parametrize("spec,name", [("1+2+3+4", "1+2+3+4"), ("4+1", "1+4"), ("2,3", "2+3"),
                                       ("none", "none"), ("", "none")])
def test_parse_combination(spec, name):
    assert parse_combination(spec).name == name


@pytest.mark.parametrize("bad", ["5", "1+1", "a+b", "1+2+3+4+5"])
def test_parse_combination_rejects(bad):
    with pytest.raises(ValueError):
        parse_combination(bad)


def test_all_combinations_cover_table1():
    combos = all_combinations()
    assert len(combos) == 16 and set(TABLE1_COMBINATIONS) <= set(combos)


def test_render_selects_fields():
    full = render_prompt(ROW, "1+2+3+4", output="OUT").text
    assert AUDIO_PLACEHOLDER in full and "synthpop, dance" in full and "Lyric Video" in full and "breakup" in full
    only23 = render_prompt(ROW, "2+3").text
    assert AUDIO_PLACEHOLDER not in only23 and "breakup" not in only23 and "Lyric Video" in only23
    none = render_prompt(ROW, "none")
    assert none.prefix.startswith("### Human: ") and none.target == ""


def test_prompt_template_and_target():
    p = render_prompt(ROW, "1", output="A video.", audio_tokens=3)
    assert p.prefix == f"Music: {AUDIO_PLACEHOLDER * 3}\n### Human: {MV_INSTRUCTION}\n### Assistant: "
    assert p.target == "A video.\n###"


def test_empty_lyrics_rendered_as_instrumental():
    p = render_prompt({**ROW, "lyrics_understanding": ""}, "4").prefix
    assert "Lyrics understanding: none (instrumental)" in p
