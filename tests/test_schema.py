import pytest
from pydantic import ValidationError

from mv4all.schema import MV_TYPES, Example, MVBeat, MVDescription, MVTypeTag, dataset_features


def _desc(n=3):
    return MVDescription(
        overview="A rain-soaked city at night; neon reflections pulse with the beat.",
        beats=[MVBeat(title=f"Scene {i}", text=f"The camera drifts past shop window {i}.") for i in range(1, n + 1)],
    )


def test_render_parse_round_trip():
    d = _desc(15)
    assert MVDescription.parse(d.render()) == d


def test_render_shape_is_figure4():
    text = _desc(2).render()
    assert text.startswith("**Overview:**\n")
    assert "\n\n**Frame-by-frame Breakdown:**\n1. **Scene 1:** " in text
    assert text.rstrip().endswith("2. **Scene 2:** The camera drifts past shop window 2.")


def test_parse_tolerates_real_model_output():
    messy = """
    Overview:   A lone dancer   moves through an empty warehouse.


    Frame-by-Frame Breakdown
    1.  Opening Shot: Dust hangs in a shaft of light.
    2) **Chorus**: She spins faster as the drums enter.
       The camera circles her.
    """
    d = MVDescription.parse(messy)
    assert d.overview == "A lone dancer   moves through an empty warehouse."
    assert [b.title for b in d.beats] == ["Opening Shot", "Chorus"]
    assert d.beats[1].text == "She spins faster as the drums enter. The camera circles her."


def test_parse_unstructured_text_becomes_overview():
    d = MVDescription.parse("Just a sentence about a video.")
    assert d.overview == "Just a sentence about a video." and d.beats == []


def test_mv_type_is_closed_set():
    assert len(MV_TYPES) == 10 and "Static/Dynamic Picture Montage" in MV_TYPES
    with pytest.raises(ValidationError):
        MVTypeTag(mv_type="Documentary")


def test_features_mirror_pydantic_fields():
    feats = dataset_features("mv_description")
    assert list(feats) == list(Example.model_fields)
    assert list(dataset_features("music_caption")) == ["id", "audio", "music_caption", "instruction"]
