"""Training run directories: what ``train/sft.py`` writes and the one loader, ``load_run``.

A run directory (the contract shared by training, evaluation and ``mv4all describe``)::

    run.json                     provenance: versions, seed, stage, inputs, data, encoder, base LLM
    config.yaml                  the resolved training config
    stage1/projector.safetensors + stage1/config.json     (stage 1: projector + MV4AllConfig)
    stage2/adapter_model.safetensors + adapter_config.json (stage 2: LoRA + projector)
    tokenizer/                   the base tokenizer plus <audio>
    logs/metrics.jsonl  trainer_state.json  README.md  checkpoints/

    generation_config.json       decoding defaults sized to the training targets

A run of a transformers audio LLM (``backbone: qwen2-audio``, ``mv4all.model.audio_lm``) has
``stage2/`` (its LoRA adapter) and ``processor/`` (tokenizer, feature extractor, chat template) in
place of ``tokenizer/``; ``run.json`` names its ``backbone`` (absent in older runs: mv4all).

Base weights (LLM, audio encoder) are not copied into a run: ``run.json`` names them (id or path
relative to the run directory) with their sha256, and ``load_run`` rebuilds the model from them,
found as ``mv4all.model.weights`` describes, and checks both hashes. A run also records its
precision, which ``load_run`` uses unless told otherwise.
"""

from __future__ import annotations

import contextlib
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
PROCESSOR_DIR = "processor"  # audio-LM runs: the model's transformers processor
PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def precision_dtype(precision: str | None) -> torch.dtype:
    """``fp32`` / ``bf16`` / ``fp16`` -> the torch dtype (never ``None``: transformers 5 reads that as "auto")."""
    key = "fp32" if precision is None else str(precision).lower()
    if key not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return PRECISIONS[key]


# What a run consists of: exactly what `mv4all push model` publishes, and all `load_run` needs.
RUN_FILE_PATTERNS = ("README.md", RUN_FILE, "config.yaml", "generation_config.json", "trainer_state.json",
                     "logs/metrics.jsonl", f"{STAGE1_DIR}/*", f"{STAGE2_DIR}/*", f"{TOKENIZER_DIR}/*",
                     f"{PROCESSOR_DIR}/*")


def run_files(run_dir: str | os.PathLike) -> tuple[list[str], list[str]]:
    """``(files of the run, other files in the folder)`` as sorted relative POSIX paths.

    The second list (checkpoints, a ``.env``, tool settings, anything a user dropped there) is never
    published; ``push model`` names it so nothing is left out silently.
    """
    run_dir = Path(run_dir)
    keep: set[str] = set()
    for pattern in RUN_FILE_PATTERNS:
        keep.update(p.relative_to(run_dir).as_posix() for p in run_dir.glob(pattern) if p.is_file())
    from ..safety import LOCK, MARKER

    others = sorted(p.relative_to(run_dir).as_posix() for p in run_dir.rglob("*")
                    if p.is_file() and p.relative_to(run_dir).as_posix() not in keep and p.name not in (MARKER, LOCK))
    return sorted(keep), others


# --------------------------------------------------------------------------- paths and hashes


def portable_path(value: str | os.PathLike | None, base: str | os.PathLike) -> str | None:
    """A Hub id stays as it is; an existing local path becomes relative to ``base`` (POSIX)."""
    if value is None:
        return None
    path = Path(str(value))
    if not path.exists():
        return str(value)
    return Path(os.path.relpath(path.resolve(), Path(base).resolve())).as_posix()


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
    """Base LLM (in ``dtype``, default fp32) + encoder + fresh projector, ``<audio>`` rows set deterministically.

    Resizing the vocabulary for ``<audio>`` draws new embedding rows at random; we overwrite them
    with the mean of the existing rows so that the same base weights always give the same model
    (a run stores only what it trained).
    """
    from transformers import AutoModelForCausalLM

    from .modeling import MV4AllForConditionalGeneration

    kwargs = {"revision": revision} if revision else {}
    # Always explicit: ``dtype=None`` would mean the checkpoint's dtype (fp16 for Vicuna), not fp32.
    kwargs["dtype"] = torch.float32 if dtype is None else dtype
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
    from ..safety import atomic_write_text

    atomic_write_text(path, json.dumps(portable(config.to_dict()), indent=2, sort_keys=True) + "\n")
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
        raise FileNotFoundError(f"{run_dir} is not a finished mv4all run (no {RUN_FILE})")
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(info, dict) or "stage" not in info:
            raise ValueError("not a run record")
        return info
    except (UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"{path} is damaged ({exc}); retrain, or restore it from the published run") from None


def _local_run_dir(run: str | os.PathLike) -> Path:
    """A local run folder, or a Hub model repo downloaded to the local cache."""
    path = Path(str(run))
    if path.exists():
        return path
    from ..safety import looks_like_hub_id

    if not looks_like_hub_id(str(run)):
        raise FileNotFoundError(f"run folder not found: {run}")
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(str(run), repo_type="model"))
    except Exception as exc:  # noqa: BLE001 - offline, unknown repo, no access: one clear line
        raise FileNotFoundError(f"{run} is neither a local run folder nor a Hub model that can be downloaded "
                                f"({type(exc).__name__})") from None


def load_run(
    run: str | os.PathLike,
    *,
    language_model: str | None = None,
    revision: str | None = None,
    audio_encoder_path: str | None = None,
    dtype: torch.dtype | str | None = None,
    device: str | torch.device | None = None,
    check_encoder: bool = True,
    check_base_model: bool = True,
):
    """Rebuild a trained model from a run directory or Hub model id.

    Returns ``(model, tokenizer, run_info)``: the model is in eval mode (a ``PeftModel`` after
    stage 2), the tokenizer has ``<audio>``. A run of a transformers audio LLM (``run.json``'s
    ``backbone``) returns its transformers processor in place of the tokenizer; its audio tower is
    part of the base checkpoint (``audio_encoder_path`` does not apply). ``language_model`` /
    ``audio_encoder_path`` say where the base weights are (else the environment, the user config,
    then the run's record: see ``mv4all.model.weights``); both must hash to what the run was
    trained with unless ``check_encoder`` / ``check_base_model`` is off. ``dtype`` (a torch dtype or ``fp32``/``bf16``/
    ``fp16``) defaults to the precision the run trained in.
    """
    from .weights import MissingBaseWeights, locate_audio_encoder, locate_base_model, model_files_sha256

    run_dir = _local_run_dir(run)
    info = read_run_info(run_dir)
    if isinstance(dtype, str) or dtype is None:
        dtype = precision_dtype(dtype or info.get("precision"))
    from .backbones import backbone_of

    if backbone_of(info).kind == "audio_lm":
        from .audio_lm import load_audio_lm_run

        return load_audio_lm_run(run_dir, info, language_model=language_model, revision=revision, dtype=dtype,
                                 device=device, check_encoder=check_encoder, check_base_model=check_base_model)
    stage = int(info["stage"])
    base = info["base_model"]
    enc = info["audio_encoder"]
    model_cfg = info["model"]
    lm_path = locate_base_model(info, run_dir, language_model).value
    enc_path = locate_audio_encoder(info, run_dir, audio_encoder_path).value
    for folder in (STAGE2_DIR if stage == 2 else STAGE1_DIR, TOKENIZER_DIR):
        if not (run_dir / folder).is_dir():
            raise MissingBaseWeights(f"{run_dir} has no {folder}/: the run is incomplete or was copied partly")
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
                f"the audio encoder at {enc_path} (sha256 {found[:12]}) is not the one this run was trained with "
                f"({enc['sha256'][:12]}): pass the right --audio-encoder (audio_encoder_path), or check_encoder=False"
            )
    if check_base_model and base.get("sha256"):
        found = model_files_sha256(lm_path, revision if language_model else base.get("revision"))
        if found is not None and found != base["sha256"]:
            raise ValueError(
                f"the base model at {lm_path} (weights sha256 {found[:12]}) is not the one this run was trained "
                f"with ({base['id']}, {base['sha256'][:12]}): pass the right --base-model, or check_base_model=False"
            )
    if stage == 1:
        weights = run_dir / STAGE1_DIR / PROJECTOR_FILE
        with _naming_bad_weights(weights):
            load_projector(model, weights)
        return ready_for_inference(model, device), tokenizer, info
    return ready_for_inference(load_adapter(model, run_dir / STAGE2_DIR), device), tokenizer, info


@contextlib.contextmanager
def _naming_bad_weights(weights: Path):
    """Truncated or foreign weight files: one error naming them, whatever the loader raised."""
    try:
        yield
    except Exception as exc:  # noqa: BLE001 - see above
        raise ValueError(f"cannot load the trained weights in {weights}: {type(exc).__name__}: "
                         f"{str(exc).splitlines()[0][:200] if str(exc) else ''}") from None


def load_adapter(model, weights: str | os.PathLike):
    """A stage-2 run's adapter (LoRA + the modules it trains in full) on top of its base ``model``."""
    from peft import PeftModel

    with _naming_bad_weights(Path(weights)):
        return PeftModel.from_pretrained(model, str(weights))


def ready_for_inference(model, device: str | None = None):
    if device is not None:
        model.to(device)
    return model.eval()


# --------------------------------------------------------------------------- saving runs

# Config keys that hold local paths: stored relative to the run directory in config.yaml and run.json.
PATH_KEYS = ("dataset", "audio_root", "embeddings", "language_model", "tokenizer", "audio_encoder_path",
             "init_from", "output_dir")
CARD_TEMPLATE = "model_card.md"  # package data: mv4all/templates/
AUDIO_LM_CARD_TEMPLATE = "model_card_audio_lm.md"


def generation_max_new_tokens(target_tokens: dict[str, int]) -> int:
    """Room for the longest training target plus 10%, rounded up to a multiple of 32."""
    longest = max(int(target_tokens.get("target_max") or 0), int(target_tokens.get("target_p99") or 0))
    want = int(longest * 1.1) + 8
    return max(64, -(-want // 32) * 32)


def whole_run_loss(log_history: list[dict], fallback: float) -> float:
    """Mean training loss over every logged step of the run, resumed sessions included."""
    losses = [entry["loss"] for entry in log_history if "loss" in entry]
    return sum(losses) / len(losses) if losses else fallback


def save_run(run_dir: str | os.PathLike, *, model, tokenizer, config: dict[str, Any], record: dict[str, Any]) -> Path:
    """Write a finished run: trained weights, tokenizer, decoding defaults, config, card, then ``run.json``.

    ``model`` is what trained (a ``PeftModel`` in stage 2); ``config`` the resolved training config;
    ``record`` the facts ``mv4all.model.provenance.run_record`` gathered. ``run.json`` is written last and
    atomically: a run folder without it is unfinished.
    """
    import yaml

    from ..describe import Decoding, save_generation_config
    from ..safety import atomic_write_text
    from .backbones import backbone_of

    run_dir = Path(run_dir)
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    audio_lm = backbone_of(config).kind == "audio_lm"
    if int(config["stage"]) == 1:
        save_projector(base, run_dir / STAGE1_DIR)
    else:
        model.peft_config["default"].base_model_name_or_path = portable_path(config["language_model"],
                                                                             run_dir / STAGE2_DIR)
        # PEFT's adapter card names the base model by the config's _name_or_path: a Hub id, or relative here.
        name = getattr(base.config, "_name_or_path", None)
        if name:
            base.config._name_or_path = portable_path(name, run_dir / STAGE2_DIR)
        try:
            model.save_pretrained(str(run_dir / STAGE2_DIR), save_embedding_layers=False)
            save_config(base.config, run_dir / STAGE2_DIR)
        finally:
            if name:
                base.config._name_or_path = name
    tokenizer.save_pretrained(str(run_dir / (PROCESSOR_DIR if audio_lm else TOKENIZER_DIR)))  # audio LM: processor
    save_generation_config(run_dir, Decoding(max_new_tokens=generation_max_new_tokens(record["target_tokens"])))
    resolved = {k: (portable_path(v, run_dir) if k in PATH_KEYS and v else v) for k, v in config.items()
                if k not in ("resume", "disable_tqdm", "overwrite")}
    atomic_write_text(run_dir / "config.yaml", "# resolved training config; local paths are relative to this run "
                      "directory\n" + yaml.safe_dump(resolved, sort_keys=False))
    from .provenance import render_model_card

    atomic_write_text(run_dir / "README.md", render_model_card(record, config))
    atomic_write_text(run_dir / RUN_FILE, json.dumps(record, indent=2) + "\n")
    return run_dir
