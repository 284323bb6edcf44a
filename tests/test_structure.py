"""Structure metrics on texts whose shape is known: well formed, truncated, looping, short, unstructured."""

from __future__ import annotations

import pytest

from mv4all.metrics import structure_metrics
from mv4all.metrics.structure import EXPECTED_FRAMES, is_truncated, repetition
from mv4all.schema import MVBeat, MVDescription

PLACES = ["harbour", "rooftop", "subway", "forest", "diner", "bridge", "desert", "garage", "stage", "beach",
          "library", "market", "tunnel", "field", "balcony"]


def well_formed(frames: int = 15) -> str:
    beats = [MVBeat(title=f"Scene {i + 1}", text=f"The singer reaches the {place} as shot {i + 1} begins.")
             for i, place in enumerate(PLACES[:frames])]
    return MVDescription(overview="A night drive through a quiet city, told in fifteen glimpses.", beats=beats,
                         closing="The MV ends on the empty road.").render()


def test_a_rendered_fifteen_frame_description_is_perfect():
    res = structure_metrics([well_formed()])
    assert EXPECTED_FRAMES == 15
    assert (res.parse_rate, res.parse_rate_10, res.mean_frames, res.mean_frame_error, res.exact_frames_rate,
            res.truncation_rate) == (1.0, 1.0, 15.0, 0.0, 1.0, 0.0)
    assert res.repetition < 0.35
    assert res.to_dict()["expected_frames"] == 15


def test_truncated_texts():
    full = well_formed()
    cut = full[: full.index("shot 9") + 4]  # "... as sho"
    assert is_truncated(cut) and not is_truncated(full)
    assert is_truncated(full.rsplit("\n", 2)[0] + "\n9. **Scene 9:**")  # a title with no text
    assert is_truncated("**Overview:**")
    assert is_truncated("")
    assert not is_truncated("The MV ends as the harmony settles.**  \n")  # bold closing marker
    assert not is_truncated('She whispers "goodbye."')
    res = structure_metrics([full, cut])
    assert res.truncation_rate == 0.5
    assert res.parse_rate == 1.0 and res.parse_rate_10 == 0.5  # the cut text kept 8 full frames + 1


def test_a_looping_text_has_high_repetition_and_no_structure():
    loop = "The singer walks down the street and the lights flicker. " * 30
    res = structure_metrics([loop])
    assert res.repetition > 0.8
    assert res.parse_rate == 0.0 and res.mean_frames == 0.0 and res.mean_frame_error == 15.0
    assert repetition("a b c d a b c d") == pytest.approx(0.2)  # 5 four-grams, 4 distinct
    assert repetition("too short") == 0.0


def test_short_and_unstructured_texts():
    res = structure_metrics([well_formed(8), "Just one paragraph about a video, with no frame list at all."])
    assert res.parse_rate == 0.5 and res.parse_rate_10 == 0.0
    assert res.mean_frames == 4.0 and res.mean_frame_error == (7 + 15) / 2 and res.exact_frames_rate == 0.0
    with pytest.raises(ValueError):
        structure_metrics([])
