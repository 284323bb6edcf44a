"""Create the tiny models that ``train/configs/tiny.yaml`` trains, locally and offline.

    python train/make_tiny.py mv4all-demo/tiny-models [--dataset mv4all-demo/dataset]

OUT/llm            a tiny Llama + its BPE tokenizer (<s>, </s>, <unk>, <pad>), trained on the
                   dataset's **train split only** and briefly pre-trained on that text: stage 1 needs
                   a language model that already knows the words (with a random frozen LM the
                   projector has nothing to align to and the loss stays flat)
OUT/audio_encoder  the ``tiny`` audio encoder (ImageBind architecture at toy width), random weights

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
        ids += [tokenizer.bos_token_id] + tokenizer(doc, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
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
    return parser


def main(args: argparse.Namespace) -> None:
    make_tiny(args.out, args.dataset, steps=args.steps, vocab_size=args.vocab_size, hidden=args.hidden,
              layers=args.layers, intermediate=args.intermediate, seed=args.seed)


if __name__ == "__main__":
    main(make_parser().parse_args())
