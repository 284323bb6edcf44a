"""Inference: a trained run (or a base LLM) + a song -> an MV description.

``mv4all describe`` (one song) and batch prediction over a dataset split (the leaderboard's
input) share this module so that a prediction file and a single-song answer come from the
same prompt, the same audio preprocessing and the same decoding settings.

Audio is cut the way the training data was: Music4All clips are 30 s, so a longer song is
reduced to one deterministic 30 s window (centred unless ``start`` is given) and a shorter one
is zero-padded; both are reported instead of silently changing what the model hears.

Decoding settings belong to the run: training writes ``generation_config.json`` with a
``max_new_tokens`` that covers its longest target, and every prediction line records the settings
that produced it. Nothing here writes into a run folder unless asked (``--save-generation-config``).
The defaults do not penalise repetition: the 15-frame format repeats phrases by design, and
transformers' ``repetition_penalty`` also punishes the prompt's genre, MV type and lyric words;
a penalty, when asked for, applies to generated tokens only.

This module never imports ``builders``: the lyrics-understanding step is a callable passed in
by the composition root (``mv4all.cli``).
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from .audio import AudioDecodeError, load_audio
from .inputs import MV_INSTRUCTION, parse_combination
from .schema import CLIP_SECONDS, MVDescription, Prediction

__all__ = [
    "GENERATION_CONFIG_FILE",
    "WINDOW_SECONDS",
    "AudioDecodeError",
    "AudioWindow",
    "Decoding",
    "Describer",
    "build_row",
    "done_ids",
    "load_generation_config",
    "load_split",
    "merge_parts",
    "parse_description",
    "part_path",
    "predict_split",
    "save_generation_config",
    "window_audio",
]

WINDOW_SECONDS = CLIP_SECONDS  # Music4All clip length: what every training example heard
GENERATION_CONFIG_FILE = "generation_config.json"
STOP = "###"  # the template closes the answer with "\n###"


# --------------------------------------------------------------------------- decoding settings


DEFAULT_MAX_NEW_TOKENS = 1024  # runs record their own; this serves runs that predate that


@dataclass
class Decoding:
    """How text is generated; ``strategy`` picks greedy, beam or sampling.

    ``repetition_penalty`` (> 1 to use it) counts generated tokens only; ``no_repeat_ngram_size``
    is off by default because frame descriptions legitimately repeat short phrases.
    """

    strategy: str = "greedy"  # greedy | beam | sample
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    num_beams: int = 4  # beam only
    temperature: float = 0.7  # sample only
    top_p: float = 0.9  # sample only
    no_repeat_ngram_size: int = 0
    repetition_penalty: float = 1.0
    batch_size: int = 8
    seed: int = 0

    def __post_init__(self):
        if self.strategy not in ("greedy", "beam", "sample"):
            raise ValueError(f"decoding strategy must be greedy, beam or sample, got {self.strategy!r}")
        if self.max_new_tokens < 1 or self.batch_size < 1:
            raise ValueError("max_new_tokens and batch_size must be >= 1")
        if self.repetition_penalty <= 0:
            raise ValueError(f"repetition_penalty must be > 0, got {self.repetition_penalty}")

    def generate_kwargs(self) -> dict[str, Any]:
        """``generate()`` arguments; the repetition penalty is a logits processor (see ``logits_processors``)."""
        kwargs: dict[str, Any] = {
            "max_new_tokens": int(self.max_new_tokens),
            "do_sample": self.strategy == "sample",
            "num_beams": int(self.num_beams) if self.strategy == "beam" else 1,
        }
        if self.no_repeat_ngram_size:
            kwargs["no_repeat_ngram_size"] = int(self.no_repeat_ngram_size)
        if self.strategy == "sample":
            kwargs.update(temperature=float(self.temperature), top_p=float(self.top_p))
        return kwargs

    def logits_processors(self, prompt_length: int) -> list:
        """A repetition penalty that ignores the ``prompt_length`` prompt tokens (transformers' counts them)."""
        if self.repetition_penalty == 1.0:
            return []
        from transformers import RepetitionPenaltyLogitsProcessor

        return [RepetitionPenaltyLogitsProcessor(float(self.repetition_penalty), prompt_ignore_length=prompt_length)]

    def record(self) -> dict[str, Any]:
        """What a prediction line stores: only settings that change the text."""
        out = {"strategy": self.strategy, **self.generate_kwargs()}
        if self.repetition_penalty != 1.0:
            out["repetition_penalty"] = float(self.repetition_penalty)
            out["repetition_penalty_scope"] = "generated tokens"
        return out

    def replace(self, **changes: Any) -> Decoding:
        known = {f.name for f in fields(self)}
        return Decoding(**{**asdict(self), **{k: v for k, v in changes.items() if k in known and v is not None}})


def save_generation_config(folder: str | os.PathLike, decoding: Decoding) -> Path:
    """Write ``generation_config.json`` (transformers' format, plus our ``mv4all`` block)."""
    from transformers import GenerationConfig

    config = GenerationConfig(**decoding.generate_kwargs())
    config.validate()  # the repetition penalty stays in our block: transformers' own counts the prompt
    data = config.to_diff_dict()
    data.pop("transformers_version", None)
    data["mv4all"] = asdict(decoding)
    path = Path(folder) / GENERATION_CONFIG_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    from .safety import atomic_write_text

    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")
    return path


def load_generation_config(folder: str | os.PathLike | None) -> Decoding | None:
    """The decoding a run directory recorded, or ``None`` if it has none of ours."""
    if folder is None:
        return None
    path = Path(folder) / GENERATION_CONFIG_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"cannot read {path}: {exc}") from None
    block = data.get("mv4all") if isinstance(data, dict) else None
    if not isinstance(block, dict):
        return None
    return Decoding().replace(**block)


# --------------------------------------------------------------------------- audio


@dataclass
class AudioWindow:
    """Which part of the file the model heard, so the caller can tell the user."""

    path: str
    duration: float  # seconds in the file
    start: float  # window start in the file
    seconds: float  # window length (the model always hears ``WINDOW_SECONDS``)
    padded: float = 0.0  # seconds of zeros appended

    @property
    def note(self) -> str | None:
        if self.padded > 0:
            return (f"audio is {self.duration:.1f} s, shorter than the {self.seconds:g} s the model was trained on: "
                    f"zero-padded by {self.padded:.1f} s")
        if self.duration > self.seconds + 1e-6:
            return (f"audio is {self.duration:.1f} s: using the {self.seconds:g} s window "
                    f"{self.start:.1f}-{self.start + self.seconds:.1f} s")
        return None


def window_audio(
    path: str | os.PathLike, sample_rate: int, start: float | None = None, seconds: float = WINDOW_SECONDS
) -> tuple[np.ndarray, AudioWindow]:
    """Decode any file PyAV reads -> ``[channels, seconds * sample_rate]`` and where it came from.

    Raises ``AudioDecodeError`` for missing, empty or corrupt files.
    """
    if start is not None and start < 0:
        raise ValueError(f"--start must be >= 0, got {start}")
    audio = load_audio(path, sr=sample_rate, mono=False)
    n = audio.shape[1]
    want = round(seconds * sample_rate)
    duration = n / sample_rate
    if n > want:
        first = (n - want) // 2 if start is None else min(round(start * sample_rate), n - want)
        audio = audio[:, first : first + want]
        return np.ascontiguousarray(audio), AudioWindow(str(path), duration, first / sample_rate, seconds)
    padded = want - n
    if padded:
        audio = np.pad(audio, ((0, 0), (0, padded)))
    return audio, AudioWindow(str(path), duration, 0.0, seconds, padded / sample_rate)


# --------------------------------------------------------------------------- rows and parsing


def build_row(
    clip_id: str,
    genres: Sequence[str] | None = None,
    mv_type: str | None = None,
    lyrics_understanding: str | None = None,
) -> dict[str, Any]:
    """A dataset-shaped row for ``render_prompt``; absent modalities stay empty (rendered "none")."""
    return {
        "id": clip_id,
        "genres": [g.strip() for g in (genres or []) if g and g.strip()],
        "mv_type": mv_type or "",
        "lyrics_understanding": lyrics_understanding or "",
        "instruction": MV_INSTRUCTION,
    }


def clean_generation(text: str) -> str:
    """Cut at the template's end marker: the model writes ``...\\n###`` after the answer."""
    return text.split(STOP, 1)[0].strip()


def parse_description(text: str) -> dict[str, Any]:
    """Structured form for ``--json``; ``{"raw", "parse_error"}`` when the text is not well-formed."""
    try:
        parsed = MVDescription.parse(text)
    except Exception as exc:  # noqa: BLE001 - any parse failure is reported, not raised
        return {"raw": text, "parse_error": str(exc)}
    # ``parse`` is lenient (anything becomes an overview); a usable description has both parts.
    missing = [name for name, ok in (("Overview", parsed.overview), ("Frame-by-frame Breakdown", parsed.beats))
               if not ok]
    if missing:
        return {"raw": text, "parse_error": f"no {' and no '.join(missing)} found"}
    return parsed.model_dump()


# --------------------------------------------------------------------------- the model wrapper


def _sha256_files(paths: Iterable[Path]) -> str | None:
    digest = hashlib.sha256()
    found = False
    for path in sorted(paths):
        if path.is_file():
            found = True
            digest.update(path.name.encode())
            with path.open("rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
    return digest.hexdigest() if found else None


class Describer:
    """A loaded model with its prompt combination and decoding, ready for batched generation.

    Build it with ``from_run`` (a trained run directory or Hub id) or ``from_base_llm`` (the
    text-only baseline). ``inputs`` defaults to the combination the run was trained with.
    """

    def __init__(
        self,
        model,
        tokenizer,
        run_info: Mapping[str, Any] | None = None,
        *,
        inputs: str | None = None,
        decoding: Decoding | None = None,
        run_name: str | None = None,
        model_sha: str | None = None,
    ):
        self.model = model
        self.tokenizer = tokenizer
        self.run_info = dict(run_info or {})
        self.train_inputs = self.run_info.get("inputs")
        self.inputs = parse_combination(inputs if inputs is not None else (self.train_inputs or "1+2+3+4")).name
        self.decoding = decoding or Decoding()
        self.run_name = run_name
        self.model_sha = model_sha
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        self.base = base
        self.multimodal = hasattr(base, "audio_features")
        if parse_combination(self.inputs).uses_audio and not self.multimodal:
            raise ValueError(f"inputs {self.inputs} include music but this model has no audio encoder")
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.unk_token or tokenizer.eos_token

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_run(
        cls,
        run: str | os.PathLike,
        *,
        inputs: str | None = None,
        decoding: Decoding | None = None,
        overrides: Mapping[str, Any] | None = None,
        device: str | None = None,
        run_name: str | None = None,
        **load_kwargs: Any,
    ) -> Describer:
        """Load a run (``load_kwargs`` go to ``load_run``).

        Decoding: ``decoding`` if given, else the run's ``generation_config.json`` with ``overrides``
        (``None`` values ignored) on top.
        """
        from .model.run import _local_run_dir, load_run

        run_dir = _local_run_dir(run)
        if decoding is None:
            decoding = (load_generation_config(run_dir) or Decoding()).replace(**dict(overrides or {}))
        model, tokenizer, info = load_run(run_dir, device=device, **load_kwargs)
        weights = list((run_dir / "stage2").glob("*.safetensors")) + list((run_dir / "stage1").glob("*.safetensors"))
        return cls(model, tokenizer, info, inputs=inputs, decoding=decoding, run_name=run_name or str(run),
                   model_sha=_sha256_files(weights))

    @classmethod
    def from_base_llm(
        cls,
        name_or_path: str | os.PathLike,
        *,
        inputs: str = "2+3+4",
        decoding: Decoding | None = None,
        device: str | None = None,
        run_name: str | None = None,
    ) -> Describer:
        """The text-only baseline: the base LLM alone, prompted with the same template."""
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(name_or_path))
        model = AutoModelForCausalLM.from_pretrained(str(name_or_path))
        if device:
            model.to(device)
        model.eval()
        weights = list(Path(str(name_or_path)).glob("*.safetensors")) if Path(str(name_or_path)).exists() else []
        info = {"inputs": None, "base_model": {"id": str(name_or_path)}}
        return cls(model, tokenizer, info, inputs=inputs, decoding=decoding or Decoding(),
                   run_name=run_name or str(name_or_path), model_sha=_sha256_files(weights))

    # ------------------------------------------------------------------ audio

    @property
    def sample_rate(self) -> int:
        return int(self.base.get_audio_encoder().sample_rate)

    def audio_features(self, path: str | os.PathLike, start: float | None = None):
        """``(encoder input [n_clips, ...], AudioWindow)`` for one file."""
        audio, window = window_audio(path, self.sample_rate, start=start)
        return self.base.audio_features(audio, self.sample_rate), window

    # ------------------------------------------------------------------ generation

    def _collator(self):
        from .model import MV4AllCollator

        audio_tokens = getattr(getattr(self.base, "config", None), "num_audio_tokens", 1) if self.multimodal else 1
        return MV4AllCollator(self.tokenizer, combination=self.inputs, audio_tokens=audio_tokens,
                              inference=True, max_length=None)

    def generate(self, rows: Sequence[Mapping[str, Any]]) -> list[str]:
        """Texts for rows (dataset-shaped; with ``input_features`` when the inputs include music).

        Rows are generated ``decoding.batch_size`` at a time, left-padded.
        """
        return [text for text, _ in self.generate_with_stops(rows)]

    def generate_with_stops(self, rows: Sequence[Mapping[str, Any]]) -> list[tuple[str, bool]]:
        """``(text, truncated)`` per row: ``truncated`` when ``max_new_tokens`` ended it, not the end marker."""
        import torch
        from transformers import LogitsProcessorList

        collator = self._collator()
        device = next(self.model.parameters()).device
        out: list[tuple[str, bool]] = []
        size = self.decoding.batch_size
        kwargs = self.decoding.generate_kwargs()
        for i in range(0, len(rows), size):
            batch = collator(list(rows[i : i + size]))
            batch = {k: v.to(device) for k, v in batch.items()}
            if "input_features" in batch:
                batch["input_features"] = batch["input_features"].to(next(self.base.parameters()).dtype)
            if self.decoding.strategy == "sample":
                torch.manual_seed(int(self.decoding.seed) + i)
            processors = self.decoding.logits_processors(batch["input_ids"].shape[1])
            with torch.inference_mode():
                generated = self.model.generate(
                    **batch, **kwargs, pad_token_id=self.tokenizer.pad_token_id,
                    eos_token_id=self.tokenizer.eos_token_id, stop_strings=[STOP], tokenizer=self.tokenizer,
                    **({"logits_processor": LogitsProcessorList(processors)} if processors else {}),
                )
            new = generated[:, batch["input_ids"].shape[1] :]
            for ids, raw in zip(new, self.tokenizer.batch_decode(new, skip_special_tokens=True)):
                ended = STOP in raw or bool((ids == self.tokenizer.eos_token_id).any())
                out.append((clean_generation(raw), not ended and len(ids) >= int(self.decoding.max_new_tokens)))
        return out

    def describe(
        self,
        audio: str | os.PathLike | None,
        *,
        genres: Sequence[str] | None = None,
        mv_type: str | None = None,
        lyrics_understanding: str | None = None,
        start: float | None = None,
        clip_id: str | None = None,
    ) -> tuple[str, AudioWindow | None]:
        """One song -> ``(description text, the audio window heard)``."""
        row = build_row(clip_id or (Path(audio).stem if audio else "song"), genres, mv_type, lyrics_understanding)
        window = None
        if parse_combination(self.inputs).uses_audio:
            if audio is None:
                raise ValueError(f"inputs {self.inputs} include music: give an audio file")
            row["input_features"], window = self.audio_features(audio, start)
        return self.generate([row])[0], window

    # ------------------------------------------------------------------ provenance

    def prediction(self, row: Mapping[str, Any], text: str, truncated: bool | None = None) -> Prediction:
        return Prediction(
            id=row["id"], prediction=text, reference=row.get("mv_description_text"), run=self.run_name,
            train_inputs=self.train_inputs, eval_inputs=self.inputs, decoding=self.decoding.record(),
            seed=int(self.decoding.seed), model_sha=self.model_sha, truncated=truncated,
        )


# --------------------------------------------------------------------------- batch predictions


IDENTITY_FIELDS = ("model_sha", "train_inputs", "eval_inputs", "decoding", "seed")


def done_ids(path: str | os.PathLike, describer: Describer | None = None) -> set[str]:
    """Ids already in a predictions file that this run may continue.

    Only our own torn last line (a crash mid-write, no final newline) is cut away. Any other line
    that is not a prediction means the file is not ours, and a line written by another model,
    other inputs or other decoding settings means the file belongs to another run: both are
    refused rather than repaired or mixed.
    """
    from .safety import UnsafeOutput

    path = Path(path)
    if not path.exists():
        return set()
    if not path.is_file():
        raise UnsafeOutput(f"{path} is not a file: give a predictions .jsonl path")
    expected = None if describer is None else describer.prediction({"id": "-"}, "").model_dump(include=set(IDENTITY_FIELDS))
    raw = path.read_bytes()
    lines = raw.split(b"\n")
    ids: set[str] = set()
    offset = 0
    for number, line in enumerate(lines, 1):
        if line.strip():
            try:
                record = Prediction.model_validate_json(line)
            except ValueError:
                if number == len(lines):  # torn last line: ours, from an interrupted write
                    with path.open("r+b") as f:
                        f.truncate(offset)
                    break
                raise UnsafeOutput(f"{path}:{number} is not an mv4all prediction line: the file was not written by "
                                   "`mv4all describe`; choose another --out") from None
            if expected is not None:
                mine = record.model_dump(include=set(IDENTITY_FIELDS))
                differ = [k for k in IDENTITY_FIELDS if mine[k] != expected[k]]
                if differ:
                    raise UnsafeOutput(f"{path} holds predictions made with another {', '.join(differ)} "
                                       f"(line {number}): choose another --out, or remove the file to start over")
            ids.add(record.id)
        offset += len(line) + 1
    return ids


def part_path(out: str | os.PathLike, rank: int) -> Path:
    out = Path(out)
    return out.with_name(f"{out.stem}.part{rank}{out.suffix or '.jsonl'}")


def merge_parts(out: str | os.PathLike, num_processes: int, order: Sequence[str] | None = None) -> Path:
    """Rank 0: fold the per-process part files into ``out`` (split order), then remove them."""
    out = Path(out)
    lines: dict[str, str] = {}
    for path in [out] + [part_path(out, r) for r in range(num_processes)]:
        if path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    try:
                        lines.setdefault(json.loads(line)["id"], line)
                    except (json.JSONDecodeError, KeyError, TypeError):
                        continue
    keys = [i for i in order if i in lines] + [i for i in lines if i not in set(order)] if order else list(lines)
    tmp = out.with_suffix(out.suffix + ".tmp")
    tmp.write_text("".join(lines[i] + "\n" for i in keys), encoding="utf-8")
    tmp.replace(out)
    for r in range(num_processes):
        part_path(out, r).unlink(missing_ok=True)
    return out


ROW_COLUMNS = ("id", "audio", "genres", "mv_type", "lyrics_understanding", "instruction", "mv_description_text")


def load_split(dataset: str | os.PathLike, split: str = "test", config: str = "mv_description") -> list[dict]:
    """The rows ``describe`` needs from one split (``mv4all.data.load_split`` reads the folder)."""
    from .data import load_split as read_split

    return list(read_split(dataset, config, split, columns=ROW_COLUMNS))


def predict_split(
    describer: Describer,
    dataset: str | os.PathLike,
    out: str | os.PathLike,
    *,
    split: str = "test",
    audio_root: str | os.PathLike | None = None,
    process_index: int = 0,
    num_processes: int = 1,
    limit: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Write predictions for one split, ``describer.decoding.batch_size`` rows per ``generate``.

    Resumable: ids already in ``out`` (or in this process's part file) are skipped. With
    several processes each writes ``out.part{rank}.jsonl`` over its shard; the caller merges on
    rank 0 with ``merge_parts`` after a barrier. Returns the file this process wrote.
    """
    rows = load_split(dataset, split)
    if limit is not None:
        rows = rows[:limit]
    target = Path(out) if num_processes == 1 else part_path(out, process_index)
    target.parent.mkdir(parents=True, exist_ok=True)
    skip = done_ids(out, describer) | (done_ids(target, describer) if target != Path(out) else set())
    mine = [r for j, r in enumerate(rows) if j % num_processes == process_index and r["id"] not in skip]
    reader = None
    if parse_combination(describer.inputs).uses_audio:
        if audio_root is None:
            raise ValueError(f"inputs {describer.inputs} include music: give audio_root (the Music4All folder)")
        from .model.embedding_cache import AudioFeatureReader

        reader = AudioFeatureReader.for_model(describer.base, audio_root)
    size = describer.decoding.batch_size
    done = 0
    with target.open("a", encoding="utf-8") as f:
        for i in range(0, len(mine), size):
            chunk = [dict(r) for r in mine[i : i + size]]
            if reader is not None:
                for r in chunk:
                    r["input_features"] = reader(r)
            for r, (text, truncated) in zip(chunk, describer.generate_with_stops(chunk)):
                f.write(describer.prediction(r, text, truncated).model_dump_json() + "\n")
            f.flush()
            done += len(chunk)
            if progress is not None:
                progress(done, len(mine))
    return target


def warn_parse(result: dict[str, Any]) -> None:
    if "parse_error" in result:
        warnings.warn(f"the generated text is not a well-formed MV description: {result['parse_error']}",
                      stacklevel=2)
