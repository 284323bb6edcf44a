"""LLM cost of the full paper-scale build (56,446 clips), from real request payloads.

For every sample clip it builds the exact request bodies the openai backends would send
(frames as base64 JPEG data URLs, prompts, strict schemas), measures bytes, images and tokens,
and extrapolates per clip to 56,446 clips, for four ways of asking:

  (a) one request per frame, standard API      (b) one request per clip, standard API
  (c) (b) on the Batch API                     (d) one contact sheet per clip, Batch API

Targets: (c) <= 50% of (a) and (d) <= 15% of (a). Nothing is sent anywhere; the CPU stages
(frames, features) run once on the sample corpus and are reused by all four scenarios.
Output tokens are estimated from stand-in answers of realistic length (offline backend).

    python bench/llm_cost.py [--clips 18] [--corpus DIR] [--work DIR] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

from builders.config import BuildConfig
from builders.llm.batch import MAX_BYTES, MAX_REQUESTS
from builders.llm.dryrun import DryRunBackend
from builders.llm.images import jpeg_size, sheet_layout
from builders.llm.openai_backend import OpenAIBackend
from builders.pipeline import Pipeline
from builders.sample.corpus import write_sample_corpus

PAPER_CLIPS = 56_446
SCENARIOS = {
    "a": ("one request per frame, standard", "frame", False),
    "b": ("one request per clip, standard", "clip", False),
    "c": ("one request per clip, Batch API", "clip", True),
    "d": ("contact sheet per clip, Batch API", "contact", True),
}


def measure(corpus: Path, work: Path, frames_mode: str, cache: Path, model: str) -> DryRunBackend:
    backend = OpenAIBackend(vision_model=model, text_model=model, frames_mode=frames_mode, cache_dir=cache)
    dry = DryRunBackend(backend)
    cfg = BuildConfig(music4all=corpus, out=work.parent / "unused-out", work_dir=work, llm="openai", workers=2)
    Pipeline(cfg, backend=dry, progress=False, dry_run="run").run()
    return dry


def scenario(dry: DryRunBackend, batch: bool) -> dict:
    per_stage = {}
    totals = {"requests": 0, "input_tokens": 0, "image_tokens": 0, "output_tokens": 0, "bytes": 0, "usd": 0.0}
    files = 0
    for name, est in dry.estimates.items():
        factor = PAPER_CLIPS / max(est.clips, 1)
        full = est.scaled(factor)
        usd = full.cost(dry.prices, batch)
        n_files = max(math.ceil(full.requests / MAX_REQUESTS), math.ceil(full.request_bytes / MAX_BYTES)) \
            if batch else 0
        per_stage[name] = {"requests": full.requests, "input_tokens": full.input_tokens,
                           "image_tokens": full.image_tokens, "output_tokens": full.output_tokens,
                           "bytes": full.request_bytes, "batch_files": n_files, "usd": usd,
                           "sample_clips": est.clips,
                           "bytes_per_request": round(est.request_bytes / max(est.requests, 1))}
        totals["requests"] += full.requests
        totals["input_tokens"] += full.input_tokens
        totals["image_tokens"] += full.image_tokens
        totals["output_tokens"] += full.output_tokens
        totals["bytes"] += full.request_bytes
        totals["usd"] += usd or 0.0
        files += n_files
    totals["batch_files"] = files
    return {"stages": per_stage, "total": totals}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=18, help="sample clips to generate when --corpus is not given")
    parser.add_argument("--corpus", type=Path, default=None,
                        help="Music4All-layout folder with videos/ (a sample corpus is written there if empty)")
    parser.add_argument("--work", type=Path, default=None, help="work dir (reuse finished frames/features)")
    parser.add_argument("--model", default="gpt-4o-mini")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="mv4all-llm-cost-"))
    corpus = args.corpus or tmp / "music4all"
    if not (corpus / "id_information.csv").is_file():
        write_sample_corpus(corpus, clips=args.clips, workers=2)
    work = args.work or tmp / "work"
    cache = tmp / "empty-cache"  # nothing counts as already paid

    report: dict = {"clips_extrapolated_to": PAPER_CLIPS, "model": args.model, "scenarios": {}}
    measured: dict[str, DryRunBackend] = {}
    for key, (label, mode, batch) in SCENARIOS.items():
        if mode not in measured:
            measured[mode] = measure(corpus, work, mode, cache, args.model)
        fig = scenario(measured[mode], batch)
        fig["label"] = label
        report["scenarios"][key] = fig
    dry = measured["contact"]
    report["prices_as_of"] = dry.prices.as_of
    report["text_tokens"] = sorted({m for e in dry.estimates.values() for m in e.methods})
    frames_dir = next((work / "frames").glob("*/*"))
    first = sorted(frames_dir.glob("*.jpg"))
    w, h = jpeg_size(first[0].read_bytes())
    opts = dry.real.opts
    layout = sheet_layout(len(first), w, h, opts.contact_cell_width, 512 if opts.contact_detail == "low" else None)
    report["contact_sheet"] = {"grid": f"{layout.cols}x{layout.rows}", "size": "x".join(map(str, layout.size)),
                               "detail": dry.real.opts.contact_detail, "frame_size": f"{w}x{h}"}
    a = report["scenarios"]["a"]["total"]["usd"]
    for key in "bcd":
        report["scenarios"][key]["share_of_a"] = round(report["scenarios"][key]["total"]["usd"] / a, 4)
    report["targets"] = {"c<=50%a": report["scenarios"]["c"]["share_of_a"] <= 0.5,
                         "d<=15%a": report["scenarios"]["d"]["share_of_a"] <= 0.15}

    table = Table(title=f"LLM cost at {PAPER_CLIPS:,} clips ({args.model}, prices as of {report['prices_as_of']}, "
                        f"text tokens {', '.join(report['text_tokens'])})")
    for col in ("", "scenario", "requests", "batch files", "input tokens", "of which image", "output tokens (est.)",
                "GB sent", "USD", "vs (a)"):
        table.add_column(col, justify="left" if col in ("", "scenario") else "right")
    for key, fig in report["scenarios"].items():
        t = fig["total"]
        table.add_row(key, fig["label"], f"{t['requests']:,}", str(t["batch_files"]) if SCENARIOS[key][2] else "-",
                      f"{t['input_tokens']:,}", f"{t['image_tokens']:,}", f"{t['output_tokens']:,}",
                      f"{t['bytes'] / 1e9:.1f}", f"${t['usd']:,.0f}",
                      f"{fig.get('share_of_a', 1.0):.0%}")
    console = Console(width=180)
    console.print(table)
    sheet = report["contact_sheet"]
    console.print(f"contact sheet: {sheet['grid']} grid of {sheet['frame_size']} frames -> {sheet['size']} px, "
                  f"detail={sheet['detail']}")
    console.print(f"targets: (c) <= 50% of (a): {report['targets']['c<=50%a']}; "
                  f"(d) <= 15% of (a): {report['targets']['d<=15%a']}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
