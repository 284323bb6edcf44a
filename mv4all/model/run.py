"""Training run directories: what ``train/sft.py`` writes and the one loader, ``load_run``.

A run directory (the contract shared by training, evaluation and ``mv4all describe``)::

    run.json                     provenance: versions, seed, stage, inputs, data, encoder, base LLM
    config.yaml                  the resolved training config
    stage1/projector.safetensors + stage1/config.json     (stage 1: projector + MV4AllConfig)
    stage2/adapter_model.safetensors + adapter_config.json (stage 2: LoRA + projector)
    tokenizer/                   the base tokenizer plus <audio>
    logs/metrics.jsonl  trainer_state.json  README.md  checkpoints/

Base weights (LLM, audio encoder) are not copied into a run: ``run.json`` names them, and
``load_run`` rebuilds the model from them and checks the encoder's weights hash. Local paths are
stored relative to the run directory so that a run can be moved or published.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch

RUN_FILE = "run.json"
STAGE1_DIR = "stage1"
STAGE2_DIR = "stage2"
PROJECTOR_FILE = "projector.safetensors"
TOKENIZER_DIR = "tokenizer"


# --------------------------------------------------------------------------- paths and hashes


def portable_path(value: str | os.PathLike | None, base: str | os.PathLike) -> str | None:
    """A Hub id stays as it is; an existing local path becomes relative to ``base`` (POSIX)."""
    if value is None:
        return None
    path = Path(str(value))
    if not path.exists():
        return str(value)
    return Path(os.path.relpath(path.resolve(), Path(base).resolve())).as_posix()


def resolve_path(value: str | None, base: str | os.PathLike) -> str | None:
    """Inverse of ``portable_path``: a relative path that exists under ``base`` becomes absolute."""
    if value is None:
        return None
    candidate = Path(base) / value
    if not Path(value).is_absolute() and candidate.exists():
        return str(candidate.resolve())
    return value


def weights_sha256(module: torch.nn.Module) -> str | None:
    """sha256 over a module's state dict (names, dtypes, shapes, bytes), independent of file format."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        if tensor.is_meta:
            return None
        t = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}\n".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def ids_sha256(ids) -> str:
    """sha256 of the sorted ids, one per line (identifies a test split)."""
    return hashlib.sha256("\n".join(sorted(ids)).encode()).hexdigest()


# --------------------------------------------------------------------------- model assembly


def load_tokenizer(name_or_path: str, revision: str | None = None):
    """The base tokenizer with ``<audio>`` (and a pad token) added."""
    from transformers import AutoTokenizer

    from .collator import add_audio_token

    tokenizer = AutoTokenizer.from_pretrained(name_or_path, revision=revision)
    add_audio_token(tokenizer)
    return tokenizer


def build_model(
    language_model: str,
    tokenizer,
    *,
    revision: str | None = None,
    audio_encoder: str = "imagebind",
    audio_encoder_path: str | None = None,
    dtype: torch.dtype | None = None,
    **config_kwargs,
):
    """Base LLM + encoder + fresh projector, with ``<audio>`` rows initialised deterministically.

    Resizing the vocabulary for ``<audio>`` draws new embedding rows at random; we overwrite them
    with the mean of the existing rows so that the same base weights always give the same model
    (a run stores only what it trained).
    """
    from transformers import AutoModelForCausalLM

    from .modeling import MV4AllForConditionalGeneration

    kwargs = {"revision": revision} if revision else {}
    if dtype is not None:
        kwargs["dtype"] = dtype
    lm = AutoModelForCausalLM.from_pretrained(language_model, **kwargs)
    old_vocab = lm.get_input_embeddings().num_embeddings
    model = MV4AllForConditionalGeneration.from_language_model(
        lm, audio_encoder=audio_encoder, audio_encoder_path=audio_encoder_path, tokenizer=tokenizer, **config_kwargs
    )
    with torch.no_grad():
        for emb in {id(m): m for m in (model.get_input_embeddings(), model.get_output_embeddings())}.values():
            weight = emb.weight
            if weight.shape[0] > old_vocab:
                weight[old_vocab:] = weight[:old_vocab].float().mean(0).to(weight.dtype)
    model.config.text_config.vocab_size = model.get_input_embeddings().num_embeddings
    # Trainable modules train in float32 even when the frozen LLM is in half precision.
    model.model.projector.float()
    return model


def save_projector(model, folder: str | os.PathLike) -> Path:
    """Stage-1 result: the projector weights and the ``MV4AllConfig`` that rebuilds the model."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.model.projector.state_dict().items()}
    save_file(state, str(folder / PROJECTOR_FILE), metadata={"format": "pt"})
    save_config(model.config, folder)
    return folder / PROJECTOR_FILE


def save_config(config, folder: str | os.PathLike) -> Path:
    """``config.json`` with local paths made relative to ``folder`` (publishable, movable)."""

    def portable(value):
        if isinstance(value, dict):
            return {k: portable(v) for k, v in value.items()}
        if isinstance(value, list):
            return [portable(v) for v in value]
        if isinstance(value, str) and os.path.isabs(value) and os.path.exists(value):
            return portable_path(value, folder)
        return value

    path = Path(folder) / "config.json"
    path.write_text(json.dumps(portable(config.to_dict()), indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path


def load_projector(model, path: str | os.PathLike) -> None:
    from safetensors.torch import load_file

    state = load_file(str(path))
    projector = model.model.projector
    ref = next(projector.parameters())
    projector.load_state_dict({k: v.to(ref.device, ref.dtype) for k, v in state.items()}, strict=True)


# --------------------------------------------------------------------------- loading runs


def read_run_info(run_dir: str | os.PathLike) -> dict[str, Any]:
    path = Path(run_dir) / RUN_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir} is not an mv4all run directory (no {RUN_FILE})")
    return json.loads(path.read_text(encoding="utf-8"))


def _local_run_dir(run: str | os.PathLike) -> Path:
    path = Path(str(run))
    if path.exists():
        return path
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(str(run), repo_type="model"))


def load_run(
    run: str | os.PathLike,
    *,
    language_model: str | None = None,
    revision: str | None = None,
    audio_encoder_path: str | None = None,
    dtype: torch.dtype | None = None,
    device: str | torch.device | None = None,
    check_encoder: bool = True,
):
    """Rebuild a trained model from a run directory or Hub model id.

    Returns ``(model, tokenizer, run_info)``: the model is in eval mode (a ``PeftModel`` after
    stage 2), the tokenizer has ``<audio>``. ``language_model`` / ``audio_encoder_path`` override
    where the base weights are (e.g. your own copy of ``imagebind_huge.pth``); the encoder's
    weights must hash to what the run was trained with unless ``check_encoder=False``.
    """
    run_dir = _local_run_dir(run)
    info = read_run_info(run_dir)
    stage = int(info["stage"])
    base = info["base_model"]
    enc = info["audio_encoder"]
    model_cfg = info["model"]
    lm_path = language_model or resolve_path(base["id"], run_dir)
    enc_path = audio_encoder_path or resolve_path(enc.get("path"), run_dir)
    tokenizer = load_tokenizer(str(run_dir / TOKENIZER_DIR))
    model = build_model(
        lm_path,
        tokenizer,
        revision=revision if language_model else base.get("revision"),
        audio_encoder=enc["name"],
        audio_encoder_path=enc_path,
        dtype=dtype,
        tokens_per_audio=model_cfg["tokens_per_audio"],
        clips_per_audio=model_cfg["clips_per_audio"],
        clip_sampler=model_cfg["clip_sampler"],
        projector_type=model_cfg.get("projector_type", "linear"),
    )
    if check_encoder and enc.get("sha256"):
        found = weights_sha256(model.get_audio_encoder())
        if found != enc["sha256"]:
            raise ValueError(
                f"the audio encoder at {enc_path} (sha256 {found}) is not the one this run was trained with "
                f"({enc['sha256']}); pass the right audio_encoder_path or check_encoder=False"
            )
    if stage == 1:
        load_projector(model, run_dir / STAGE1_DIR / PROJECTOR_FILE)
    else:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(run_dir / STAGE2_DIR))
    if device is not None:
        model.to(device)
    model.eval()
    return model, tokenizer, info
