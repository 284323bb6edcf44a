"""Our ImageBind audio branch and its preprocessing against the official code's recorded outputs.

The fixtures (copied from the shared reference) were produced with facebookresearch/ImageBind
itself: the audio state-dict key list, and a golden forward + preprocessing run with weights
from a seeded rule, so these tests need neither the 4.8 GB checkpoint nor torchaudio.
"""

from __future__ import annotations

import json
import math
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

from mv4all.audio import clip_sample_slices, clip_starts, covering_clip_count, imagebind_clips, load_imagebind_clips
from mv4all.model import ImageBindAudioConfig, ImageBindAudioEncoder, build_audio_encoder, load_audio_encoder

FIXTURES = Path(__file__).parent / "fixtures"
KEYS = json.loads((FIXTURES / "imagebind_audio_keys.json").read_text())
GOLDEN = json.loads((FIXTURES / "imagebind_audio_golden.json").read_text())
OUT = GOLDEN["outputs"]
PREP = GOLDEN["preprocessing"]
TOL = 1e-4


def _out(prefix: str):
    """Golden entries are keyed by descriptive names; look them up by their stable prefix."""
    (value,) = [v for k, v in OUT.items() if k.startswith(prefix)]
    return torch.tensor(value, dtype=torch.float32)


def _rule_weights() -> dict[str, torch.Tensor]:
    """The golden file's documented weight rule."""
    weights = {}
    for i, entry in enumerate(KEYS["keys"]):
        name = entry["name"]
        t = torch.randn(entry["shape"], generator=torch.Generator().manual_seed(1000 + i), dtype=torch.float32) * 0.02
        layer_norm = name.endswith(("norm_layer.weight", "norm_1.weight", "norm_2.weight"))
        if layer_norm or name == "modality_heads.audio.0.weight":
            t = 1 + t
        if name == "modality_postprocessors.audio.1.log_logit_scale":
            t = torch.tensor(math.log(20.0), dtype=torch.float32)
        weights[name] = t
    return weights


def _golden_waveform() -> np.ndarray:
    n = np.arange(480000, dtype=np.float64)
    t = n / 16000
    w = (
        0.3 * np.sin(2 * np.pi * 440 * t)
        + 0.2 * np.sin(2 * np.pi * (100 * t + (4000 - 100) / (2 * 30) * t**2))
        + 0.01 * np.random.default_rng(0).standard_normal(len(n))
    )
    return w.astype(np.float32)


@pytest.fixture(scope="module")
def golden_encoder() -> ImageBindAudioEncoder:
    with torch.device("meta"):
        encoder = ImageBindAudioEncoder(ImageBindAudioConfig())
    encoder.load_state_dict(_rule_weights(), strict=True, assign=True)
    return encoder.freeze()


# --------------------------------------------------------------------------- structure


def test_state_dict_keys_and_shapes_equal_the_official_audio_branch():
    with torch.device("meta"):
        encoder = ImageBindAudioEncoder(ImageBindAudioConfig())
    state = encoder.state_dict()
    assert [(k, list(v.shape)) for k, v in state.items()] == [(e["name"], e["shape"]) for e in KEYS["keys"]]
    assert all(v.dtype == torch.float32 for v in state.values())
    assert sum(p.numel() for p in encoder.parameters()) == KEYS["num_params"] == 86_235_648
    assert [name for name, _ in encoder.named_buffers()] == ["modality_postprocessors.audio.1.log_logit_scale"]


def test_rule_weights_reproduce_the_golden_fingerprints():
    weights = _rule_weights()
    (prints,) = [v for k, v in OUT.items() if k.startswith("weight_fingerprints")]
    for entry in prints[:5] + prints[-5:]:
        got = weights[entry["name"]].flatten()[:3].tolist()
        assert got == pytest.approx(entry["first3"], rel=1e-6, abs=1e-9), entry["name"]


# --------------------------------------------------------------------------- forward


def test_forward_matches_golden_without_and_with_logit_scale(golden_encoder):
    x = torch.randn(1, 3, 1, 128, 204, generator=torch.Generator().manual_seed(7))
    assert x.flatten()[:8].tolist() == pytest.approx(OUT["input_x_fingerprint"]["first_8"], abs=1e-6)
    config = golden_encoder.config
    assert config.apply_logit_scale is False  # NExT-GPT / DeepResonance convention by default
    with torch.no_grad():
        plain = golden_encoder(x)
        config.apply_logit_scale = True
        try:
            scaled = golden_encoder(x).audio_embeds
        finally:
            config.apply_logit_scale = False
    unscaled = plain.audio_embeds
    assert unscaled.shape == (1, 3, 1024)
    assert (unscaled[0] - _out("per_clip_unscaled")).abs().max() < TOL
    assert (unscaled.mean(1)[0] - _out("final_unscaled")).abs().max() < TOL
    assert (scaled[0] - _out("per_clip_scaled")).abs().max() < TOL
    assert (scaled.mean(1)[0] - _out("final_scaled")).abs().max() < TOL
    assert (plain.last_hidden_state[0, 0, :16] - _out("trunk_output_CLS")).abs().max() < TOL
    assert unscaled.mean(1).norm().item() == pytest.approx(OUT["norms"]["final_unscaled"], abs=1e-5)
    assert plain.pooler_output.norm(dim=-1).tolist() == pytest.approx(
        OUT["norms"]["head_output_per_clip_before_normalize"], abs=1e-3
    )


def test_encoder_is_frozen_and_stays_in_eval(golden_encoder):
    golden_encoder.train()
    assert not golden_encoder.training
    assert not any(m.training for m in golden_encoder.modules())
    assert not any(p.requires_grad for p in golden_encoder.parameters())


# --------------------------------------------------------------------------- checkpoint loading


def _tiny_state() -> dict[str, torch.Tensor]:
    encoder = build_audio_encoder("tiny")
    return {k: torch.randn_like(v) for k, v in encoder.state_dict().items()}


def test_full_checkpoint_loads_audio_strictly_and_ignores_other_modalities(tmp_path):
    audio = _tiny_state()
    others = {
        "modality_preprocessors.vision.cls_token": torch.randn(1, 1, 8),
        "modality_trunks.vision.blocks.0.attn.in_proj_weight": torch.randn(24, 8),
        "modality_heads.text.proj.0.weight": torch.randn(8),
        "modality_postprocessors.text.1.log_logit_scale": torch.tensor(1.0),
    }
    path = tmp_path / "imagebind_huge.pth"
    torch.save({**others, **audio}, path)

    encoder = load_audio_encoder("tiny", path)
    loaded = encoder.state_dict()
    assert loaded.keys() == audio.keys()
    assert all(torch.equal(loaded[k], audio[k]) for k in audio)
    assert not any(p.requires_grad for p in encoder.parameters())

    missing = dict(audio)
    missing.pop("modality_trunks.audio.blocks.1.mlp.fc2.bias")
    torch.save({**others, **missing}, path)
    with pytest.raises(RuntimeError, match="Missing key"):
        load_audio_encoder("tiny", path)

    wrong = {**audio, "modality_heads.audio.2.weight": torch.randn(5, 32)}
    torch.save(wrong, path)
    with pytest.raises(RuntimeError, match="size mismatch"):
        load_audio_encoder("tiny", path)

    extra = {**audio, "modality_trunks.audio.blocks.7.norm_1.weight": torch.randn(32)}
    torch.save(extra, path)
    with pytest.raises(RuntimeError, match="Unexpected key"):
        load_audio_encoder("tiny", path)

    torch.save(others, path)
    with pytest.raises(ValueError, match="no ImageBind audio weights"):
        load_audio_encoder("tiny", path)


# --------------------------------------------------------------------------- preprocessing


def test_fbank_matches_official_preprocessing():
    w = _golden_waveform()
    assert w[:8].tolist() == pytest.approx(PREP["waveform_fingerprint"]["first_8"], abs=1e-7)
    clips = imagebind_clips(w)
    assert clips.shape == (3, 1, 128, 204) and clips.dtype == torch.float32
    gold = PREP["clip0_fbank_normalized"]
    c0 = clips[0].double()
    assert c0.mean().item() == pytest.approx(gold["mean"], abs=1e-6)
    assert c0.std(unbiased=False).item() == pytest.approx(gold["std_ddof0"], abs=1e-6)
    assert c0.min().item() == pytest.approx(gold["min"], abs=1e-5)
    assert c0.max().item() == pytest.approx(gold["max"], abs=1e-5)
    blocks = {k.split(" (")[0]: v for k, v in gold.items() if k.startswith("[0,")}
    assert (c0[0, 0:4, 0:4] - torch.tensor(blocks["[0, 0:4, 0:4]"], dtype=torch.float64)).abs().max() < 1e-5
    assert (c0[0, 60:64, 100:104] - torch.tensor(blocks["[0, 60:64, 100:104]"], dtype=torch.float64)).abs().max() < 1e-5
    assert (c0[0, 0:4, 196:204] - torch.tensor(blocks["[0, 0:4, 196:204]"], dtype=torch.float64)).abs().max() < 1e-5
    assert clips[0, 0, 0, 203].item() == pytest.approx(gold["pad_value_observed_[0,0,203]"], abs=1e-6)


@pytest.mark.parametrize(
    "sampler,golden_key",
    [("imagebind", "pytorchvideo_git_pinned_by_imagebind"), ("pytorchvideo-0.1.5", "pytorchvideo_pypi_0.1.5")],
)
def test_every_clip_matches_official_statistics(sampler, golden_key):
    w = _golden_waveform()
    gold = PREP["clip_start_times"]["per_sampler"][golden_key]["clips"]
    slices = clip_sample_slices(len(w), sampler=sampler)
    assert [[s.start, s.stop] for s in slices] == [c["sample_slice"] for c in gold]
    clips = imagebind_clips(w, sampler=sampler).double()
    for clip, g in zip(clips, gold):
        assert clip.mean().item() == pytest.approx(g["mean"], abs=1e-6)
        assert clip.std(unbiased=False).item() == pytest.approx(g["std_ddof0"], abs=1e-6)


@pytest.mark.parametrize(
    "duration,sampler,expected",
    [
        (30.0, "imagebind", [0, 14, 28]),
        (10.0, "imagebind", [0, 4, 8]),
        (60.0, "imagebind", [0, 29, 58]),
        (30.0, "pytorchvideo-0.1.5", [0, Fraction(28, 3), Fraction(56, 3)]),
        (10.0, "pytorchvideo-0.1.5", [0, Fraction(8, 3), Fraction(16, 3)]),
        (60.0, "pytorchvideo-0.1.5", [0, Fraction(58, 3), Fraction(116, 3)]),
        (1.5, "imagebind", [0, 0, 0]),
    ],
)
def test_clip_starts(duration, sampler, expected):
    assert clip_starts(duration, 3, 2.0, sampler) == expected


def test_clips_covering_the_whole_clip():
    n = covering_clip_count(30.0)
    assert n == 15
    assert clip_starts(30.0, n) == list(range(0, 30, 2))
    slices = clip_sample_slices(480000, num_clips=n)
    assert slices[0] == slice(0, 32000) and slices[-1] == slice(448000, 480000)
    assert all(a.stop == b.start for a, b in zip(slices, slices[1:]))  # tiles without gaps
    assert imagebind_clips(np.zeros(16000 * 30, np.float32), num_clips=n).shape == (15, 1, 128, 204)


def test_file_loading_uses_the_first_channel_like_upstream(tmp_path):
    import soundfile as sf

    rng = np.random.default_rng(1)
    stereo = (rng.standard_normal((16000 * 3, 2)) * 0.1).astype(np.float32)
    path = tmp_path / "clip.wav"
    sf.write(path, stereo, 16000, subtype="FLOAT")
    clips = load_imagebind_clips(path)
    assert clips.shape == (3, 1, 128, 204)
    assert torch.allclose(clips, imagebind_clips(stereo[:, 0]), atol=1e-5)
    assert not torch.allclose(clips, imagebind_clips(stereo[:, 1]), atol=1e-3)
