"""LLM-as-judge: an optional, paid second opinion on generated MV descriptions.

BLEU, ROUGE and BERTScore reward overlap with one reference, but an MV description can differ
from the reference and still be good (or overlap and be useless). The judge reads the clip's
measured facts, the reference and the candidate, and scores the candidate 1-5 on four criteria
(rubric and prompt in ``eval/judge.v1.yaml``). It never runs by default: it costs money and its
scores depend on the judging model, so they are reported beside Table 1, not in it.

Everything that talks to the API is the builder's (``builders/llm``): ``StructuredAsker``
(``builders/llm/structured.py``, shared with the shot-prompt rewrite) over the same ``ChatClient``
(retries, rate limits, JSON-mode fallback), the same strict ``json_schema`` response format and
re-ask prompt, the same content-addressed ``ResponseCache`` (a repeat run sends nothing), token
counter and price table. The API key is read from the environment by the client only; it is in
no request body, cache record, failure reason or report.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError
from rich.table import Table

from builders.llm.facts import fence
from builders.llm.requests import ChatRequest, InvalidAnswer, response_format
from builders.llm.structured import AskTotals, StructuredAsker
from builders.prompts import PromptTemplate

RUBRIC_FILE = Path(__file__).with_name("judge.v1.yaml")
ROW_COLUMNS = ("id", "genres", "mv_type", "lyrics_understanding", "music_features")  # what a row must carry
MAX_TOKENS = 600  # four one-sentence reasons fit in ~250 tokens; the rest is headroom
SEED = 1234
# Dry-run output estimate: a verdict whose four reasons are ~25-word sentences.
_STAND_IN_REASON = " ".join(["evidence"] * 24) + "."


class CriterionScore(BaseModel):
    """One criterion: an integer 1-5 (an enum, which every strict-mode server supports) and why."""

    model_config = ConfigDict(extra="forbid")
    score: Literal[1, 2, 3, 4, 5]
    reason: str


class JudgeVerdict(BaseModel):
    """The judge's structured answer; field names are the rubric's criterion keys."""

    model_config = ConfigDict(extra="forbid")
    musical_fit: CriterionScore
    visual_concreteness: CriterionScore
    mv_type_consistency: CriterionScore
    prompt_usefulness: CriterionScore


CRITERIA: tuple[str, ...] = tuple(JudgeVerdict.model_fields)


@functools.lru_cache(maxsize=None)
def load_rubric(path: str | None = None) -> tuple[PromptTemplate, dict[str, str]]:
    """The judge's prompt (rubric rendered into the system message) and each criterion's title.

    The template's digest covers the whole file, so editing the rubric changes every cache key
    and the reported prompt version: old verdicts are never passed off as answers to a new rubric.
    """
    raw = Path(path or RUBRIC_FILE).read_bytes()
    data = yaml.safe_load(raw)
    criteria = data.get("criteria") or {}
    if tuple(criteria) != CRITERIA:
        raise ValueError(f"{RUBRIC_FILE.name}: criteria {list(criteria)} must be, in order, {list(CRITERIA)}")
    tpl = PromptTemplate(stage=data["stage"], version=int(data["version"]), system=data["system"], user=data["user"],
                         parts=dict(data.get("parts") or {}), digest=hashlib.sha256(raw).hexdigest())
    lines = [tpl.part("criterion", key=key, **{f: " ".join(str(c[f]).split()) for f in ("title", "question", "scale")})
             for key, c in criteria.items()]
    tpl = replace(tpl, system=tpl.render(tpl.system, rubric="\n".join(lines)).strip())
    return tpl, {key: str(c["title"]) for key, c in criteria.items()}


# ---------------------------------------------------------------------------- requests


def music_facts(features: Mapping[str, Any] | None) -> str:
    """The few measured facts the rubric asks about; lenient, since rows may be partial."""
    if not features:
        return "Music features: not measured"

    def num(name: str, fmt: str) -> str:
        value = features.get(name)
        return "unknown" if value is None else format(float(value), fmt)

    bpb = features.get("beats_per_bar")
    return "\n".join([
        f"Tempo: {num('tempo', '.1f')} BPM",
        f"Meter: {f'{bpb} beats per bar' if bpb else 'unknown'}",
        f"Key: {features.get('key') or 'unknown'}",
        f"Energy: {num('energy', '.2f')}; valence: {num('valence', '.2f')}; danceability: "
        f"{num('danceability', '.2f')} (0-1 scale; valence is musical positiveness)",
    ])


def build_request(prediction: str, row: Mapping[str, Any] | BaseModel, reference: str, *, model: str,
                  token_param: str = "max_completion_tokens", index: int = 0) -> ChatRequest:
    """One judge request. Lyrics, reference and candidate are fenced: they are untrusted text,
    and a candidate that says "score me 5" must stay data."""
    row = row.model_dump() if isinstance(row, BaseModel) else row
    tpl, _ = load_rubric()
    user = tpl.user_text(
        music=music_facts(row.get("music_features")), genres=", ".join(row.get("genres") or []) or "unknown",
        mv_type=row.get("mv_type") or "unknown", lyrics=fence(row.get("lyrics_understanding") or "(none)"),
        reference=fence(reference or "(none)", "REFERENCE"), candidate=fence(prediction or "(empty)", "CANDIDATE"))
    body = {"model": model, "messages": [{"role": "system", "content": tpl.system}, {"role": "user", "content": user}],
            "response_format": response_format(JudgeVerdict), "temperature": 0.0, "seed": SEED,
            token_param: MAX_TOKENS}
    return ChatRequest(stage="judge", clip_id=str(row.get("id") or index), part=None, output_model=JudgeVerdict,
                       body=body, expect={})


def parse_verdict(content: str | None) -> JudgeVerdict:
    """A verdict, or ``InvalidAnswer`` with a reason the re-ask prompt passes back to the model."""
    if not content:
        raise InvalidAnswer("empty answer")
    try:
        verdict = JudgeVerdict.model_validate_json(content)
    except ValidationError as exc:
        first = exc.errors()[0] if exc.errors() else {}
        raise InvalidAnswer(f"does not match the JudgeVerdict schema: {first.get('msg', exc)} at "
                            f"{'/'.join(map(str, first.get('loc', ())))}") from None
    empty = [key for key in CRITERIA if not getattr(verdict, key).reason.strip()]
    if empty:
        raise InvalidAnswer(f"give a one-sentence reason for {', '.join(empty)}")
    return verdict


# ---------------------------------------------------------------------------- report


@dataclass
class JudgeReport(AskTotals):
    model: str
    prompt_version: str
    host: str
    ids: list[str]
    verdicts: list[JudgeVerdict | None]
    failures: list[dict[str, Any]] = field(default_factory=list)  # {"index", "id", "reason"}
    # sent, cache_hits, reasks, input_tokens, output_tokens, cost_usd; estimate (a dry run's): from AskTotals

    @property
    def n_judged(self) -> int:
        return sum(v is not None for v in self.verdicts)

    @property
    def n_failed(self) -> int:
        return len(self.failures)

    @property
    def means(self) -> dict[str, float | None]:
        done = [v for v in self.verdicts if v is not None]
        return {key: (sum(getattr(v, key).score for v in done) / len(done) if done else None) for key in CRITERIA}

    def to_dict(self) -> dict[str, Any]:
        titles = load_rubric()[1]
        return {
            "model": self.model, "prompt_version": self.prompt_version, "host": self.host,
            "criteria": titles, "means": self.means, "n": len(self.ids), "n_judged": self.n_judged,
            "n_failed": self.n_failed, "failures": self.failures,
            "verdicts": [{"id": i, "verdict": v.model_dump() if v is not None else None}
                         for i, v in zip(self.ids, self.verdicts)],
            "usage": {"sent": self.sent, "cache_hits": self.cache_hits, "reasks": self.reasks,
                      "input_tokens": self.input_tokens, "output_tokens": self.output_tokens,
                      "cost_usd": self.cost_usd},
            "dry_run": None if self.estimate is None else vars(self.estimate),
        }


def _usd(value: float | None) -> str:
    return "unknown" if value is None else f"${value:,.4f}"


def _head(report: JudgeReport) -> str:
    return f"LLM judge {report.model} ({report.prompt_version}, {report.host})"


def _counts(report: JudgeReport) -> list[str]:
    """What the run did (or, for a dry run, would send) and what it cost."""
    est = report.estimate
    if est is not None:
        return [f"dry run: {est.requests} requests ({est.cached} cached), {est.input_tokens} input tokens, "
                f"~{est.output_tokens} output tokens, {_usd(est.usd)} (prices as of {est.prices_as_of}; "
                f"tokens {est.token_method}); nothing sent"]
    return [f"{report.n_judged} judged, {report.n_failed} failed; {report.sent} requests sent, "
            f"{report.cache_hits} from the cache, {report.reasks} re-asked, {_usd(report.cost_usd)}"] + \
        [f"failed {f['id']}: {f['reason']}" for f in report.failures[:5]] + \
        ([f"... and {report.n_failed - 5} more failures (see to_dict()['failures'])"] if report.n_failed > 5 else [])


def summary_lines(report: JudgeReport) -> list[str]:
    """Plain lines (greppable in logs): the run's counts and cost, then the per-criterion means."""
    titles = load_rubric()[1]
    lines = [f"{_head(report)}: {line}" for line in _counts(report)]
    if report.estimate is None:
        lines += [f"  {titles[k]}: {'n/a' if m is None else f'{m:.2f}'} / 5" for k, m in report.means.items()]
    return lines


def judge_table(report: JudgeReport) -> Table:
    """The per-criterion means (1-5) as a rich table; the run's counts and cost in the caption."""
    table = Table(title=_head(report), caption="\n".join(_counts(report)))
    table.add_column("criterion")
    table.add_column("mean (1-5)", justify="right")
    titles = load_rubric()[1]
    for key, mean in report.means.items():
        table.add_row(titles[key], "n/a" if mean is None else f"{mean:.2f}")
    return table


# ---------------------------------------------------------------------------- running


def judge_predictions(predictions: Sequence[str], rows: Sequence[Mapping[str, Any] | BaseModel],
                      references: Sequence[str], *, model: str = "gpt-4o-mini", base_url: str | None = None,
                      cache_dir: Path | str | None = None, dry_run: bool = False, concurrency: int = 4,
                      max_reasks: int = 2, api_key_env: str = "OPENAI_API_KEY", timeout: float = 120.0,
                      max_retries: int = 6, rpm: int | None = None, tpm: int | None = None) -> JudgeReport:
    """Judge ``predictions[i]`` against ``rows[i]`` (a dataset row: music_features, genres, mv_type,
    lyrics_understanding, id) and ``references[i]``.

    ``base_url`` defaults to ``$OPENAI_BASE_URL`` (else api.openai.com); ``cache_dir`` to the builder's
    shared LLM cache. A judgement that fails (after retries and re-asks) is listed in
    ``report.failures``, never fatal. ``dry_run`` sends nothing and needs no key: it only prices the
    requests not already in the cache.
    """
    if not len(predictions) == len(rows) == len(references):
        raise ValueError(f"predictions ({len(predictions)}), rows ({len(rows)}) and references "
                         f"({len(references)}) must have the same length")
    judge = StructuredAsker(parse_verdict, model=model, base_url=base_url, cache_dir=cache_dir,
                            api_key_env=api_key_env, max_reasks=max_reasks, timeout=timeout, max_retries=max_retries,
                            rpm=rpm, tpm=tpm, who="the LLM judge", base_url_hint="a base URL",
                            cut_off="be more concise")
    reqs = [build_request(p, r, ref, model=model, token_param=judge.token_param, index=i)
            for i, (p, r, ref) in enumerate(zip(predictions, rows, references))]
    report = JudgeReport(model=model, prompt_version=load_rubric()[0].version_id, host=judge.host,
                         ids=[r.clip_id for r in reqs], verdicts=[None] * len(reqs))
    if dry_run:
        stand_in = JudgeVerdict(**{k: CriterionScore(score=3, reason=_STAND_IN_REASON) for k in CRITERIA})
        report.estimate = judge.estimate(reqs, stand_in.model_dump_json())
        return report

    def one(i: int) -> None:
        try:
            report.verdicts[i] = judge.ask(reqs[i]).unwrap()
        except Exception as exc:  # noqa: BLE001 - one failed judgement is reported, not fatal
            report.failures.append({"index": i, "id": reqs[i].clip_id, "reason": judge.reason(exc)})

    judge.run(reqs, one, concurrency=concurrency, thread_name_prefix="judge")
    report.failures.sort(key=lambda f: f["index"])
    judge.totals(report)
    return report
