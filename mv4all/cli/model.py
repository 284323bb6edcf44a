"""The commands that run the model: ``mv4all embed`` (the frozen audio encoder over a dataset, once,
into the cache training reads) and ``mv4all describe`` (one song, or a whole dataset split)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Optional

import typer

from mv4all.cli.common import app, check_writable, console, fail


@app.command()
def embed(
    dataset: Path = typer.Option(..., "--dataset", help="Built dataset folder (every id of both configs is embedded)."),
    audio_root: Path = typer.Option(
        ..., "--audio-root", help="Music4All root: dataset audio paths are relative to it."),
    encoder: str = typer.Option(
        ..., "--encoder", help="Registry name (imagebind, tiny, ast, clap, whisper) or a saved encoder folder."),
    encoder_path: Optional[str] = typer.Option(
        None, "--encoder-path", help="Weights for a registry name: imagebind_huge.pth, a folder or hub id."),
    out: Path = typer.Option(..., "--out", "-o", help="Cache folder to write (embeddings.safetensors + index.json)."),
    tokens_per_audio: str = typer.Option(
        "1", "--tokens-per-audio", help="The model's setting: 1 (3 clips), k (k clips) or N (tile the clip)."),
    clip_sampler: str = typer.Option("imagebind", "--clip-sampler", help="imagebind or pytorchvideo-0.1.5."),
    batch_size: int = typer.Option(8, "--batch-size", min=1),
    workers: int = typer.Option(0, "--workers", "-j", min=0, help="DataLoader workers for decoding + fbank."),
    device: Optional[str] = typer.Option(None, "--device", help="torch device [cuda if available]."),
    backbone: str = typer.Option(
        "mv4all", "--backbone",
        help="mv4all, or an audio LLM (qwen2-audio): --encoder is then its checkpoint (folder or Hub id) "
             "and its frozen audio tower is cached (hundreds of frames per clip: the size is printed first)."),
    precision: str = typer.Option("bf16", "--precision", help="Audio-LLM tower precision (the training one)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Audio LLM: print the cache size, build nothing."),
) -> None:
    """Run the frozen audio encoder once over the dataset; training then reads the cache."""
    import torch
    from rich.progress import Progress

    from mv4all.model import MV4AllConfig
    from mv4all.model.embedding_cache import build_embedding_cache, dataset_audio
    from mv4all.safety import claim_folder

    if backbone != "mv4all":
        _embed_audio_lm(dataset, audio_root, encoder, out, backbone=backbone, precision=precision,
                        batch_size=batch_size, device=device, dry_run=dry_run)
        return
    try:
        claim_folder(out, "embeddings", legacy=("index.json",))
        clips = MV4AllConfig(audio_encoder="imagebind", tokens_per_audio=tokens_per_audio).clips_per_audio
        total = len(dataset_audio(dataset))
    except (ValueError, FileNotFoundError) as exc:
        fail(str(exc), 2)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    started = time.perf_counter()
    try:
        with Progress(console=console) as progress:
            task = progress.add_task("embedding audio", total=total)
            folder = build_embedding_cache(dataset, audio_root, encoder, out, encoder_path=encoder_path, clips=clips,
                                           sampler=clip_sampler, batch_size=batch_size, num_workers=workers,
                                           device=device, progress=lambda n: progress.advance(task, n))
    except (ValueError, FileNotFoundError) as exc:
        fail(str(exc), 2)
    index = json.loads((folder / "index.json").read_text())
    console.print(f"embedded {index['num_ids']} audios x {index['clips_per_audio']} clips (dim {index['dim']}) "
                  f"with {index['encoder']['name']} (sha256 {index['encoder']['sha256'][:12]}) in "
                  f"{time.perf_counter() - started:.1f} s -> {folder}")


def _embed_audio_lm(dataset: Path, audio_root: Path, model: str, out: Path, *, backbone: str, precision: str,
                    batch_size: int, device: str | None, dry_run: bool) -> None:
    """The frozen audio tower of an audio LLM over every clip: its size printed before anything loads."""
    from rich.progress import Progress

    from mv4all.model.audio_lm import build_tower_cache
    from mv4all.model.embedding_cache import dataset_audio
    from mv4all.safety import claim_folder

    try:
        if dry_run:
            build_tower_cache(model, dataset, audio_root, out, backbone=backbone, precision=precision,
                              dry_run=True, log=console.print)
            return
        claim_folder(out, "embeddings", legacy=("index.json",))
        total = len(dataset_audio(dataset))
        with Progress(console=console) as progress:
            task = progress.add_task(f"{backbone} audio tower", total=total)
            folder = build_tower_cache(model, dataset, audio_root, out, backbone=backbone, precision=precision,
                                       batch_size=batch_size, device=device, log=console.print,
                                       progress=lambda n: progress.advance(task, n))
    except (ValueError, FileNotFoundError, KeyError) as exc:
        fail(str(exc), 2)
    console.print(f"wrote {folder}")


@app.command()
def describe(
    audio: Optional[Path] = typer.Argument(None, help="A song (any format PyAV decodes). Not with --dataset."),
    model: str = typer.Option(..., "--model", "-m", help="Run directory (train/sft.py) or Hub model id."),
    genre: list[str] = typer.Option([], "--genre", "-g", help="Genre tag (repeat, or comma-separated): input 2."),
    mv_type: Optional[str] = typer.Option(None, "--mv-type", help="One of the 10 MV types: input 3."),
    lyrics: Optional[Path] = typer.Option(
        None, "--lyrics", help="Lyrics text file: summarised by the build's lyrics-understanding step (input 4)."),
    lyrics_understanding: Optional[str] = typer.Option(
        None, "--lyrics-understanding", help="Ready-made lyrics understanding text (input 4)."),
    llm: str = typer.Option("offline", "--llm", help="Backend for --lyrics: offline (default, no network) or openai."),
    start: Optional[float] = typer.Option(
        None, "--start", min=0.0, help="Start (s) of the 30 s window of a longer song [centred]."),
    inputs: Optional[str] = typer.Option(
        None, "--inputs", help="Input combination, e.g. 1+2+3 or none [the run's training inputs]."),
    as_json: bool = typer.Option(False, "--json", help="Structured output (MVDescription.parse)."),
    dataset: Optional[Path] = typer.Option(None, "--dataset", help="Batch mode: a built dataset folder."),
    split: str = typer.Option("test", "--split", help="Batch mode: the split to describe."),
    audio_root: Optional[Path] = typer.Option(
        None, "--audio-root", help="Batch mode: the Music4All folder the dataset's audio paths are relative to."),
    out: Optional[Path] = typer.Option(
        None, "--out", "-o", help="Batch mode: predictions JSONL (resumable). --whole-song: the MV script JSON."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Batch mode: first N rows only."),
    decoding: Optional[str] = typer.Option(
        None, "--decoding", help="greedy, beam or sample [the run's generation_config.json, else greedy]."),
    max_new_tokens: Optional[int] = typer.Option(None, "--max-new-tokens", min=1),
    num_beams: Optional[int] = typer.Option(None, "--num-beams", min=1),
    temperature: Optional[float] = typer.Option(None, "--temperature", min=0.0),
    top_p: Optional[float] = typer.Option(None, "--top-p", min=0.0, max=1.0),
    no_repeat_ngram_size: Optional[int] = typer.Option(None, "--no-repeat-ngram-size", min=0),
    repetition_penalty: Optional[float] = typer.Option(None, "--repetition-penalty", min=0.0),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1),
    seed: Optional[int] = typer.Option(None, "--seed"),
    save_generation_config: bool = typer.Option(
        False, "--save-generation-config",
        help="Store these decoding settings in the run's generation_config.json (the only way describe writes "
             "into a run)."),
    audio_encoder: Optional[str] = typer.Option(
        None, "--audio-encoder",
        help="The run's frozen audio encoder weights (e.g. imagebind_huge.pth) [MV4ALL_AUDIO_ENCODER, the user "
             "config, then the run's record]."),
    base_model: Optional[str] = typer.Option(
        None, "--base-model",
        help="The run's base LLM, path or Hub id [MV4ALL_BASE_MODEL, the user config, then the run's record]."),
    precision: Optional[str] = typer.Option(
        None, "--precision", help="fp32, bf16 or fp16 [the precision the run trained in]."),
    device: Optional[str] = typer.Option(None, "--device", help="torch device [cuda if available]."),
    whole_song: bool = typer.Option(
        False, "--whole-song",
        help="Describe the whole song in 30 s windows aligned to its sections and downbeats: an MV script (JSON "
             "with -o, Markdown on stdout)."),
    max_minutes: float = typer.Option(
        15.0, "--max-minutes", min=0.0, help="--whole-song: refuse songs longer than this (0: no limit)."),
) -> None:
    """Describe a song's music video (Overview + Frame-by-frame Breakdown), a whole song's MV script, or a split."""
    import torch

    from mv4all import describe as D
    from mv4all.inputs import parse_combination
    from mv4all.schema import MV_TYPES

    if (audio is None) == (dataset is None):
        fail("give either an audio file or --dataset DIR (batch mode)", 2)
    if dataset is not None and out is None:
        fail("batch mode needs --out predictions.jsonl", 2)
    if lyrics is not None and lyrics_understanding is not None:
        fail("--lyrics and --lyrics-understanding are alternatives: give one", 2)
    if whole_song:
        if dataset is not None:
            fail("--whole-song describes one song: not with --dataset", 2)
        if start is not None:
            fail("--start chooses one 30 s window: not with --whole-song (every window is described)", 2)
        _check_script_out(out, [p for p in (audio, lyrics) if p is not None])
    try:
        combo = None if inputs is None else parse_combination(inputs).name
    except ValueError as exc:
        fail(str(exc), 2)
    if mv_type is not None:
        match = {t.lower(): t for t in MV_TYPES}.get(mv_type.strip().lower())
        if match is None:
            fail(f"unknown MV type {mv_type!r}; choose one of: {', '.join(MV_TYPES)}", 2)
        mv_type = match
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    overrides = dict(strategy=decoding, max_new_tokens=max_new_tokens, num_beams=num_beams,
                     temperature=temperature, top_p=top_p, no_repeat_ngram_size=no_repeat_ngram_size,
                     repetition_penalty=repetition_penalty, batch_size=batch_size, seed=seed)
    if precision is not None and precision.lower() not in ("fp32", "bf16", "fp16"):
        fail(f"--precision must be fp32, bf16 or fp16, got {precision!r}", 2)
    try:
        D.Decoding().replace(**overrides)  # bad settings fail before anything loads
    except ValueError as exc:
        fail(str(exc), 2)

    # Lyrics understanding runs before the model loads, so a backend problem fails fast.
    genres = [g.strip() for item in genre for g in item.split(",") if g.strip()]
    notes: list[str] = []
    if lyrics is not None:
        from builders.llm import get_backend
        from builders.stages import LYRICS_UNDERSTANDING, StageInput
        from mv4all.schema import Track

        if not lyrics.is_file():
            fail(f"lyrics file not found: {lyrics}", 2)
        name = audio.stem if audio is not None else lyrics.stem
        try:
            backend = get_backend(llm)
            track = Track(id=name, artist="", song=name)
            result = backend.run(LYRICS_UNDERSTANDING, [StageInput(clip_id=name, track=track,
                                                                   lyrics=lyrics.read_text(encoding="utf-8"))])[0]
        except Exception as exc:  # noqa: BLE001 - any backend failure is a clear CLI error
            fail(f"lyrics understanding with the {llm} backend failed: {exc}", 2)
        if not result.ok:
            fail(f"lyrics understanding with the {llm} backend failed: {result.error}", 2)
        lyrics_understanding = result.output.text
        notes.append(f"lyrics understanding by the {llm} backend ({result.model or llm})")

    if audio is not None and not audio.is_file():
        fail(f"audio file not found: {audio}", 2)
    if whole_song:
        _describe_whole_song(audio, out, max_minutes=max_minutes, as_json=as_json, model=model, combo=combo,
                             overrides=overrides, device=device, base_model=base_model, audio_encoder=audio_encoder,
                             precision=precision, genres=genres, mv_type=mv_type,
                             lyrics_understanding=lyrics_understanding, notes=notes,
                             save_generation_config=save_generation_config)
        return
    describer = _load_describer(model, combo=combo, overrides=overrides, device=device, base_model=base_model,
                                audio_encoder=audio_encoder, precision=precision,
                                save_generation_config=save_generation_config)
    used = parse_combination(describer.inputs)
    for number, option, given in ((2, "--genre", bool(genres)), (3, "--mv-type", mv_type is not None),
                                  (4, "--lyrics/--lyrics-understanding", lyrics_understanding is not None)):
        if given and number not in used:
            console.print(f"[yellow]warning:[/] {option} is ignored: inputs {describer.inputs} do not include "
                          f"input {number} (pass --inputs to choose)", soft_wrap=True)

    if dataset is not None:  # batch mode; under `accelerate launch` each process takes a shard, rank 0 merges
        import torch
        from accelerate import PartialState

        # On a CPU-only machine PartialState must be told, else torchrun's ranks each see one process.
        state = PartialState(cpu=(device == "cpu" or not torch.cuda.is_available()))
        try:
            written = D.predict_split(describer, dataset, out, split=split, audio_root=audio_root, limit=limit,
                                      process_index=state.process_index, num_processes=state.num_processes)
        except (FileNotFoundError, ValueError, KeyError) as exc:
            fail(str(exc), 2)
        state.wait_for_everyone()
        if state.num_processes > 1 and state.is_main_process:
            written = D.merge_parts(out, state.num_processes, [r["id"] for r in D.load_split(dataset, split)])
        if state.is_main_process:
            console.print(f"{len(D.done_ids(out))} predictions in {written}")
        return
    try:
        text, window = describer.describe(audio, genres=genres, mv_type=mv_type,
                                          lyrics_understanding=lyrics_understanding, start=start)
    except D.AudioDecodeError as exc:
        fail(f"cannot read audio: {exc}", 2)
    if window is not None and window.note:
        notes.append(window.note)
    if start is not None and window is not None and window.duration <= window.seconds:
        notes.append(f"--start ignored: the audio is {window.duration:.1f} s, "
                     f"no longer than the {window.seconds:g} s window")
    for note in notes:
        console.print(f"note: {note}", markup=False, soft_wrap=True)
    if as_json:
        structured = D.parse_description(text)
        if "parse_error" in structured:
            console.print(f"[yellow]warning:[/] the output is not a well-formed MV description "
                          f"({structured['parse_error']}); returning the raw text")
        structured["meta"] = {"model": model, "inputs": describer.inputs, "train_inputs": describer.train_inputs,
                              "decoding": describer.decoding.record(), "notes": notes,
                              "audio_window": None if window is None else
                              {"start": window.start, "seconds": window.seconds, "duration": window.duration,
                               "padded": window.padded}}
        print(json.dumps(structured, indent=2, ensure_ascii=False))
    else:
        print(text)


# --------------------------------------------------------------------------- describe --whole-song


def _check_script_out(out: Optional[Path], inputs: list[Path]) -> None:
    """``-o`` for a script: never one of the inputs, never a file that is not an MV script; writable."""
    if out is None:
        return
    for given in inputs:
        if out.resolve() == given.resolve() or (out.exists() and given.exists() and os.path.samefile(out, given)):
            fail(f"-o {out} is an input of this command: refusing to overwrite it", 2)
    if out.is_file():
        from mv4all.schema import SongScript

        try:
            SongScript.model_validate_json(out.read_text(encoding="utf-8"))
        except (ValueError, OSError, UnicodeDecodeError):
            fail(f"-o {out} exists and is not an MV script: refusing to overwrite it (choose another path)", 2)
    check_writable(out, "-o")


def _describe_whole_song(audio: Path, out: Optional[Path], *, max_minutes: float, as_json: bool, model: str,
                         combo: Optional[str], overrides: dict, device: str, base_model: Optional[str],
                         audio_encoder: Optional[str], precision: Optional[str], genres: list[str],
                         mv_type: Optional[str], lyrics_understanding: Optional[str], notes: list[str],
                         save_generation_config: bool = False) -> None:
    """Measure once (builders.song), describe in windows (mv4all.song), write the script, print it.

    The measurement runs before the model loads and its madmom sessions are released first, so peak memory is
    the larger of the two steps, not their sum.
    """
    import gc

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from mv4all import describe as D
    from mv4all import song as S
    from mv4all.safety import atomic_write_text

    limit = max_minutes if max_minutes > 0 else None
    try:
        S.check_duration(S.probe_duration(audio), limit, what=audio.name)  # before anything heavy
    except S.SongTooLongError as exc:
        fail(str(exc), 2)
    except D.AudioDecodeError as exc:
        fail(f"cannot read audio: {exc}", 2)

    from builders.song import SongAnalyzer

    started = time.perf_counter()
    try:
        with console.status(f"measuring {audio.name} (beats, downbeats, key, chords, sections)"):
            analyzer = SongAnalyzer()
            facts, sections = analyzer.measure_file(audio, max_minutes=limit)
    except S.SongTooLongError as exc:
        fail(str(exc), 2)
    except (D.AudioDecodeError, ValueError) as exc:
        fail(f"cannot read audio: {exc}", 2)
    peak_measure = analyzer.peak_rss_mb
    del analyzer
    gc.collect()
    measured = time.perf_counter() - started
    console.print(f"measured {audio.name} in {measured:.1f} s: {S.clock(facts.duration)}, {facts.tempo:.0f} BPM, "
                  f"{facts.key}, {len(facts.downbeats)} downbeats, {len(sections)} sections "
                  f"({' '.join(s.label for s in sections)})", markup=False, soft_wrap=True)

    describer = _load_describer(model, combo=combo, overrides=overrides, device=device, base_model=base_model,
                                audio_encoder=audio_encoder, precision=precision,
                                save_generation_config=save_generation_config)

    started = time.perf_counter()
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=False) as progress:
        task = progress.add_task("describing windows", total=None)
        try:
            script = S.describe_song(
                describer, audio, facts, sections, genres=genres, mv_type=mv_type,
                lyrics_understanding=lyrics_understanding, notes=notes,
                model=Path(model).name if Path(model).is_dir() else model,  # scripts are shared: no local paths
                on_plan=lambda plans: progress.update(task, total=len(plans)),
                progress=lambda n: progress.advance(task, n),
            )
        except D.AudioDecodeError as exc:
            fail(f"cannot read audio: {exc}", 2)
    described = time.perf_counter() - started
    for note in notes:
        console.print(f"note: {note}", markup=False, soft_wrap=True)
    console.print(f"described {len(script.windows)} windows in {described:.1f} s: {len(script.shots)} shots "
                  f"(peak memory while measuring {peak_measure:.0f} MB)", markup=False, soft_wrap=True)
    text = script.model_dump_json(indent=2) + "\n"
    if out is not None:
        atomic_write_text(out, text)
        console.print(f"MV script written to {out}", markup=False, soft_wrap=True)
    print(text if as_json else script.render_markdown(), end="")


def _load_describer(model: str, *, combo, overrides: dict, device, base_model, audio_encoder, precision,
                    save_generation_config: bool):
    """The run as a ``Describer`` (one line on failure); ``--save-generation-config`` stores its decoding."""
    from mv4all import describe as D

    started = time.perf_counter()
    try:
        describer = D.Describer.from_run(model, inputs=combo, overrides=overrides, device=device,
                                         language_model=base_model, audio_encoder_path=audio_encoder,
                                         dtype=precision)
    except (FileNotFoundError, ValueError, OSError) as exc:
        fail(f"cannot load model {model}: {exc}", 2)
    if save_generation_config:
        if not Path(model).is_dir():
            fail("--save-generation-config needs a local run directory", 2)
        console.print(f"decoding settings saved to {D.save_generation_config(model, describer.decoding)}")
    console.print(f"loaded {model} (trained on {describer.train_inputs}, describing with inputs "
                  f"{describer.inputs}) in {time.perf_counter() - started:.1f} s", markup=False, soft_wrap=True)
    return describer
