"""Create the tiny models that ``train/configs/tiny.yaml`` trains, locally and offline.

    python train/make_tiny.py mv4all-demo/tiny-models [--dataset mv4all-demo/dataset]

OUT/llm            a tiny Llama + its BPE tokenizer (<s>, </s>, <unk>, <pad>), trained on the
                   dataset's **train split only** and briefly pre-trained on that text: stage 1 needs
                   a language model that already knows the words (with a random frozen LM the
                   projector has nothing to align to and the loss stays flat)
OUT/audio_encoder  the ``tiny`` audio encoder (ImageBind architecture at toy width), random weights

    python train/make_tiny.py OUT --qwen2-audio [--dataset mv4all-demo/dataset]

OUT/qwen2-audio    a tiny random ``Qwen2AudioForConditionalGeneration`` checkpoint with its processor (the
                   real WhisperFeatureExtractor: 128 mel bins x 3000 frames at 16 kHz -> 750 audio tokens; a
                   BPE tokenizer with Qwen's special tokens trained on the train split; the chat template),
                   loadable with ``from_pretrained`` like ``Qwen/Qwen2-Audio-7B-Instruct`` (qwen2_audio.yaml)

Nothing is downloaded. Deterministic for a given dataset and seed.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from mv4all.inputs import CAPTION_INSTRUCTION, MV_INSTRUCTION, render_prompt

SPECIAL_TOKENS = ["<unk>", "<s>", "</s>", "<pad>"]


def train_texts(dataset: str | Path) -> tuple[list[str], list[str]]:
    """``(tokenizer_docs, pretrain_docs)`` from the train split of both configs (test rows never seen).

    The tokenizer sees all train text. The LM is pre-trained on the music captions only, also in the
    stage-1 prompt format with the genre tags on the ``Music:`` line, a text stand-in for the audio
    token: the LM learns to read that line, and stage 1 teaches the projector to put there what the
    LM expects (the LLaVA-style alignment the paper's stage 1 does with a real LLM). MV descriptions
    are left to stage 2, as a 2-layer LM cannot hold both.
    """
    from mv4all.data import load_split

    descriptions = load_split(dataset, "mv_description", "train")
    genres = {row["id"]: ", ".join(row["genres"]) for row in descriptions}
    pretrain: list[str] = []
    for row in load_split(dataset, "music_caption", "train"):
        pretrain.append(row["music_caption"])
        music = f"Music: {genres.get(row['id']) or 'music'}\n"
        pretrain.append(music + render_prompt(row, "none", CAPTION_INSTRUCTION, row["music_caption"]).text)
    other = [render_prompt({}, "2+3+4", MV_INSTRUCTION).text]  # the MV prompt's words
    for row in descriptions:
        other += [row["mv_description_text"], row["lyrics_understanding"], row["unified_music_caption"]]
    keep = lambda docs: [d for d in docs if d and d.strip()]  # noqa: E731
    return keep(pretrain + other), keep(pretrain)


def make_tokenizer(docs: list[str], vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    raw = Tokenizer(models.BPE(unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    raw.train_from_iterator(docs, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=raw, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>",
        model_max_length=4096,
    )


QWEN_SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|AUDIO|>", "<|audio_bos|>", "<|audio_eos|>"]
# The chat template Qwen2-Audio-7B-Instruct ships (an audio item is recognised by its "audio"/"audio_url" key,
# not its type, unlike transformers' default template): the tiny checkpoint renders prompts exactly like it.
QWEN2_AUDIO_CHAT_TEMPLATE = (
    "{% set audio_count = namespace(value=0) %}{% for message in messages %}{% if loop.first and message['role'] != "
    "'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}<|im_start|>"
    "{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n{% else %}"
    "{% for content in message['content'] %}{% if 'audio' in content or 'audio_url' in content %}"
    "{% set audio_count.value = audio_count.value + 1 %}Audio {{ audio_count.value }}: "
    "<|audio_bos|><|AUDIO|><|audio_eos|>\n{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}"
    "<|im_end|>\n{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def make_qwen2_audio(out: str | Path, docs: list[str], *, vocab_size: int = 512, hidden: int = 64, layers: int = 2,
                     audio_d_model: int = 32, audio_layers: int = 2, seed: int = 0) -> Path:
    """A tiny random Qwen2-Audio checkpoint + processor in ``out`` (``from_pretrained``-loadable); returns ``out``.

    Real audio front end (WhisperFeatureExtractor, 128 mel bins, 3000 frames, max_source_positions 1500), toy
    widths everywhere else; the tokenizer is a byte-level BPE trained on ``docs`` with Qwen's special tokens
    (eos ``<|im_end|>``, pad ``<|endoftext|>``), and the Instruct checkpoint's chat template.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import (
        PreTrainedTokenizerFast,
        Qwen2AudioConfig,
        Qwen2AudioForConditionalGeneration,
        Qwen2AudioProcessor,
        WhisperFeatureExtractor,
    )

    out = Path(out)
    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    raw.train_from_iterator(docs + ["system\nYou are a helpful assistant.\nuser\nassistant\nAudio 1: "],
                            trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=QWEN_SPECIAL_TOKENS,
                                                initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                                show_progress=False))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=raw, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                        model_max_length=8192)
    processor = Qwen2AudioProcessor(feature_extractor=WhisperFeatureExtractor(feature_size=128), tokenizer=tokenizer,
                                    chat_template=QWEN2_AUDIO_CHAT_TEMPLATE)
    config = Qwen2AudioConfig(
        audio_config={"model_type": "qwen2_audio_encoder", "d_model": audio_d_model, "encoder_layers": audio_layers,
                      "encoder_attention_heads": 2, "encoder_ffn_dim": 2 * audio_d_model, "num_mel_bins": 128,
                      "max_source_positions": 1500},
        text_config={"model_type": "qwen2", "hidden_size": hidden, "intermediate_size": 2 * hidden,
                     "num_hidden_layers": layers, "num_attention_heads": 4, "num_key_value_heads": 2,
                     "vocab_size": len(tokenizer), "max_position_embeddings": 4096,
                     "eos_token_id": tokenizer.eos_token_id, "pad_token_id": tokenizer.pad_token_id,
                     "bos_token_id": None, "tie_word_embeddings": False},
        audio_token_index=processor.audio_token_id)
    torch.manual_seed(seed)
    model = Qwen2AudioForConditionalGeneration(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


def make_llm(tokenizer, hidden: int = 64, layers: int = 2, intermediate: int | None = None):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=intermediate or hidden * 3,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    return LlamaForCausalLM(config)


def pretrain(model, tokenizer, docs: list[str], steps: int, block: int = 256, batch: int = 8, lr: float = 3e-3,
             seed: int = 0) -> list[float]:
    """Plain next-token training on the concatenated documents (random blocks)."""
    ids: list[int] = []
    for doc in docs:
        ids += ([tokenizer.bos_token_id] + tokenizer(doc, add_special_tokens=False)["input_ids"]
                + [tokenizer.eos_token_id])
    stream = torch.tensor(ids)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 20) * max(0.1, 1 - s / steps))
    model.train()
    losses = []
    for _ in range(steps):
        starts = torch.randint(0, len(stream) - block - 1, (batch,), generator=gen)
        x = torch.stack([stream[s : s + block] for s in starts])
        loss = model(input_ids=x, labels=x).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad()
        losses.append(loss.item())
    return losses


def make_tiny(out: str | Path, dataset: str | Path, *, steps: int = 300, vocab_size: int = 1024,
              hidden: int = 64, layers: int = 2, intermediate: int | None = None, seed: int = 0,
              threads: int | None = 1,
              quiet: bool = False) -> dict[str, Path]:
    """Write OUT/llm and OUT/audio_encoder; returns their paths."""
    from mv4all.model import build_audio_encoder

    out = Path(out)
    started = time.perf_counter()
    if threads:
        torch.set_num_threads(threads)  # tiny ops: one thread beats several, especially on a shared CPU
    torch.manual_seed(seed)
    docs, lm_docs = train_texts(dataset)
    tokenizer = make_tokenizer(docs, vocab_size)
    model = make_llm(tokenizer, hidden, layers, intermediate)
    losses = pretrain(model, tokenizer, lm_docs, steps, seed=seed)
    model.eval()
    llm_dir, enc_dir = out / "llm", out / "audio_encoder"
    model.save_pretrained(llm_dir)
    tokenizer.save_pretrained(llm_dir)
    torch.manual_seed(seed + 1)
    build_audio_encoder("tiny").save_pretrained(enc_dir)
    info = {
        "dataset": str(dataset), "docs": len(docs), "vocab_size": len(tokenizer), "pretrain_steps": steps,
        "pretrain_loss_first": losses[0] if losses else None, "pretrain_loss_last": losses[-1] if losses else None,
        "seed": seed, "seconds": round(time.perf_counter() - started, 1),
    }
    (out / "tiny.json").write_text(json.dumps(info, indent=2) + "\n")
    if not quiet:
        print(f"tiny models in {out}: vocab {len(tokenizer)}, LM pre-train loss "
              f"{info['pretrain_loss_first']:.2f} -> {info['pretrain_loss_last']:.2f} ({info['seconds']} s)")
    return {"llm": llm_dir, "audio_encoder": enc_dir}


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--dataset", default="mv4all-demo/dataset", help="built dataset folder (train split is used)")
    parser.add_argument("--steps", type=int, default=300, help="LM pre-training steps")
    parser.add_argument("--vocab-size", type=int, default=1024)
    parser.add_argument("--hidden", type=int, default=64, help="LM hidden size (the demo model: 128)")
    parser.add_argument("--layers", type=int, default=2, help="LM layers (the demo model: 4)")
    parser.add_argument("--intermediate", type=int, help="LM MLP width [3 x hidden; the demo model: 256]")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--qwen2-audio", action="store_true",
                        help="write OUT/qwen2-audio (a tiny random Qwen2-Audio checkpoint + processor) instead")
    return parser


def main(args: argparse.Namespace) -> None:
    if args.qwen2_audio:
        torch.set_num_threads(1)
        path = make_qwen2_audio(Path(args.out) / "qwen2-audio", train_texts(args.dataset)[0], seed=args.seed,
                                vocab_size=args.vocab_size, hidden=args.hidden, layers=args.layers)
        print(f"tiny Qwen2-Audio in {path}")
        return
    make_tiny(args.out, args.dataset, steps=args.steps, vocab_size=args.vocab_size, hidden=args.hidden,
              layers=args.layers, intermediate=args.intermediate, seed=args.seed)


if __name__ == "__main__":
    main(make_parser().parse_args())
