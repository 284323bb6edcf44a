"""Lyrics understanding: what the lyrics are about, told without quoting them.

Themes, imagery, mood, the hook, the narrative voice and the language are read off the
lyrics with the word lists in ``lexicon`` (en/es/ko), then written as a short English
summary. Lyrics are third-party text the dataset must not redistribute, so every summary is
trimmed until it shares at most ``MAX_LYRIC_RUN`` consecutive words with them.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections import Counter
from typing import Any, Sequence

from builders.checks import MAX_LYRIC_RUN  # the one lyric-overlap limit
from builders.llm.offline.lexicon import (
    FUNCTION_WORDS,
    IMAGERY,
    KO_PARTICLES,
    LANGUAGE_NAMES,
    MOOD_WORDS,
    PRONOUNS,
    SPANISH_CHARACTERS,
    STOPWORDS,
    THEME_NAME_WORDS,
    THEMES,
)
from builders.llm.offline.text import NUMBER_WORDS, Chooser, counted, join_list, split_sentences
from builders.textcheck import longest_shared_run
from mv4all.schema import Track

_WORD_RE = re.compile(r"[^\W_]+(?:'[^\W_]+)?", re.UNICODE)


def _strip_accents(text: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFD", text) if unicodedata.category(c) != "Mn")


_HANGUL_RE = re.compile("[\uac00-\ud7a3]")


def _is_hangul(token: str) -> bool:
    return _HANGUL_RE.search(token) is not None


def word_tokens(text: str) -> list[str]:
    """Lower-cased words of ``text`` in any script (an inner apostrophe stays in the word)."""
    return [t.lower() for t in _WORD_RE.findall(text or "")]


def _en_forms(token: str) -> set[str]:
    forms = {token, token.replace("'", "")}
    for suffix, repl in (("ies", "y"), ("es", ""), ("s", ""), ("ing", ""),
                         ("ing", "e"), ("ed", ""), ("ed", "e"), ("'s", "")):
        if token.endswith(suffix) and len(token) - len(suffix) >= 3:
            forms.add(token[: -len(suffix)] + repl)
    return forms


@functools.lru_cache(maxsize=65536)
def _forms(token: str) -> frozenset[str]:
    """Accent-free simple inflection forms of a Latin-script token (cached: lyrics repeat)."""
    return frozenset(_en_forms(_strip_accents(token)))


def _matches(token: str, entry: str) -> bool:
    """Does a lyric token match a lexicon entry (language-aware, see ``lexicon.THEMES``)."""
    if _is_hangul(entry):
        if entry.endswith("*"):
            return token.startswith(entry[:-1])
        return token.startswith(entry) and token[len(entry) :] in KO_PARTICLES
    entry = entry.rstrip("*")
    plain = _strip_accents(token)
    return entry == token or _strip_accents(entry) in _en_forms(plain)


class _Lexicon:
    """Fast lookups for the word lists above (exact forms; Hangul entries by prefix)."""

    def __init__(self, words: Sequence[str]) -> None:
        self.exact = {_strip_accents(w.rstrip("*")) for w in words if not _is_hangul(w)}
        self.hangul = [w for w in words if _is_hangul(w)]

    def hit(self, token: str) -> bool:
        if _is_hangul(token):
            return any(_matches(token, e) for e in self.hangul)
        return not self.exact.isdisjoint(_forms(token))


def _all_words(entry: dict[str, Any]) -> list[str]:
    return [w for lang in ("en", "es", "ko") for w in entry.get(lang, [])]


_THEME_LEX = {name: _Lexicon(_all_words(entry)) for name, entry in THEMES.items()}
_MOOD_LEX = {k: _Lexicon([w for words in v.values() for w in words]) for k, v in MOOD_WORDS.items()}


def detect_themes(text: str, limit: int = 3) -> list[str]:
    """Theme keys found in ``text`` (lyrics in en/es/ko, or an English summary), strongest first."""
    tokens = word_tokens(text)
    scores: dict[str, int] = {}
    first: dict[str, int] = {}
    for i, tok in enumerate(tokens):
        for name, lex in _THEME_LEX.items():
            if lex.hit(tok):
                scores[name] = scores.get(name, 0) + 1
                first.setdefault(name, i)
    if not scores:
        return []
    top = max(scores.values())
    ranked = sorted(scores, key=lambda n: (-scores[n], first[n], n))
    return [n for n in ranked if scores[n] >= max(2, 0.34 * top) or n == ranked[0]][:limit]


def themes_from_summary(text: str, limit: int = 3) -> list[str]:
    """Theme keys an English lyrics summary names (offline or LLM-written), in order of mention."""
    out: list[str] = []
    for tok in word_tokens(text):
        key = THEME_NAME_WORDS.get(tok)
        if key and key not in out:
            out.append(key)
    return out[:limit]


def detect_language(lyrics: str, hint: str = "") -> tuple[str, bool]:
    """(language code, mixed-with-English) from the script and function words of the lyrics."""
    hangul = sum(1 for c in lyrics if 0xAC00 <= ord(c) <= 0xD7A3)
    latin_words = [t for t in word_tokens(lyrics) if not _is_hangul(t) and t.isalpha()]
    if hangul and hangul >= 0.2 * (hangul + sum(len(w) for w in latin_words)):
        return "ko", len(latin_words) >= 3
    accents = sum(1 for c in lyrics.lower() if c in SPANISH_CHARACTERS)
    es = sum(1 for t in latin_words if t in FUNCTION_WORDS["es"])
    en = sum(1 for t in latin_words if t in FUNCTION_WORDS["en"])
    if es + accents > en:
        return "es", False
    if en:
        return "en", False
    hint = (hint or "").strip().lower()
    return (hint if hint in LANGUAGE_NAMES else ""), False


def _pronoun_counts(tokens: list[str]) -> dict[str, int]:
    counts = {"i": 0, "you": 0, "we": 0, "they": 0}
    for tok in tokens:
        for table in PRONOUNS.values():
            for person, words in table.items():
                if tok in words:
                    counts[person] += 1
                    break
            else:
                continue
            break
    return counts


def _perspective(counts: dict[str, int], choose: Chooser) -> str:
    i, you, we, they = counts["i"], counts["you"], counts["we"], counts["they"]
    if we > max(i, you) and we >= 2:
        return "sung from a collective 'we' perspective"
    if i and you:
        return choose.pick("persp", ("told in the first person and addressed to a 'you'",
                                     "a first-person voice speaking directly to a 'you'"))
    if i:
        return "told in an introspective first-person voice"
    if you:
        return "addressed directly to a 'you'"
    if they:
        return "narrated in the third person"
    return "in an impersonal, descriptive voice"


_IMAGERY_LATIN = {_strip_accents(w): g for lang in ("es", "en") for w, g in IMAGERY[lang].items()}


def _imagery(tokens: list[str]) -> list[str]:
    counts: Counter[str] = Counter()
    first: dict[str, int] = {}
    for i, tok in enumerate(tokens):
        gloss = None
        if _is_hangul(tok):
            gloss = next((g for w, g in IMAGERY["ko"].items() if _matches(tok, w)), None)
        else:
            gloss = next((_IMAGERY_LATIN[f] for f in sorted(_forms(tok)) if f in _IMAGERY_LATIN), None)
        if gloss:
            counts[gloss] += 1
            first.setdefault(gloss, i)
    return sorted(counts, key=lambda g: (-counts[g], first[g], g))


def _mood(tokens: list[str], themes: list[str]) -> str:
    pos = sum(1 for t in tokens if _MOOD_LEX["positive"].hit(t))
    neg = sum(1 for t in tokens if _MOOD_LEX["negative"].hit(t))
    theme_moods = [THEMES[t]["mood"] for t in themes[:2]]
    if pos > 1.5 * neg and pos >= 2:
        balance = "hopeful"
    elif neg > 1.5 * pos and neg >= 2:
        balance = "sorrowful"
    elif pos and neg:
        balance = "bittersweet"
    else:
        balance = "reflective"
    words: list[str] = []
    for w in theme_moods + [balance]:
        if w not in words:
            words.append(w)
    return join_list(words[:3])


def _hook(lines: list[str], lang: str) -> tuple[int, int, str | None]:
    """(times the most repeated line occurs, number of distinct repeated lines, its key word)."""
    norm = [re.sub(r"\s+", " ", line.strip().lower()) for line in lines if line.strip()]
    counts = Counter(norm)
    repeated = [line for line in counts if counts[line] >= 2]
    if not repeated:
        return 1, 0, None
    top = max(counts[line] for line in repeated)
    words: Counter[str] = Counter()
    order: dict[str, int] = {}
    pronouns = set().union(*(w for table in PRONOUNS.values() for w in table.values()))
    for line in norm:
        if counts[line] < 2:
            continue
        for tok in word_tokens(line):
            if tok in STOPWORDS or tok in pronouns or (len(tok) < 3 and not _is_hangul(tok)):
                continue
            words[tok] += 1
            order.setdefault(tok, len(order))
    key = sorted(words, key=lambda w: (-words[w], order[w]))[0] if words else None
    return top, len(repeated), key


def limit_lyric_overlap(text: str, lyrics: str, max_words: int = MAX_LYRIC_RUN) -> str:
    """Drop sentences (then trailing words) until ``text`` shares at most ``max_words``
    consecutive words with ``lyrics``."""
    if longest_shared_run(text, lyrics) <= max_words:
        return text
    kept = [s for s in split_sentences(text) if longest_shared_run(s, lyrics) <= max_words]
    out = " ".join(kept)
    while out and longest_shared_run(out, lyrics) > max_words:  # a run spanning two kept sentences
        kept = kept[:-1]
        out = " ".join(kept)
    return out


def write_lyrics_understanding(lyrics: str, track: Track | None, choose: Chooser) -> str:
    lines = [line for line in lyrics.splitlines()]
    content = [line for line in lines if line.strip()]
    stanzas = len([b for b in re.split(r"\n\s*\n", lyrics.strip()) if b.strip()])
    tokens = word_tokens(lyrics)
    lang, mixed = detect_language(lyrics, track.lang if track else "")
    themes = detect_themes(lyrics)
    theme_names = [THEMES[t]["name"] for t in themes]
    persp = _perspective(_pronoun_counts(tokens), choose)
    images = _imagery(tokens)[:4]
    top, n_repeated, key = _hook(content, lang)

    out: list[str] = []
    if theme_names:
        out.append(
            choose.pick(
                "lu1",
                (
                    f"The lyrics revolve around {join_list(theme_names)}, {persp}.",
                    f"At their core the lyrics are about {join_list(theme_names)}, {persp}.",
                    f"Thematically the song explores {join_list(theme_names)}, {persp}.",
                ),
            )
        )
    else:
        out.append(f"The lyrics do not settle on one clear theme; they are {persp}.")
    mood = _mood(tokens, themes)
    out.append(choose.pick("lu2", (f"The emotional tone is {mood}.",
                                   f"Their mood reads as {mood}.", f"The feeling is {mood}.")))
    if images:
        out.append(choose.pick("lu3", (f"Recurring imagery includes {join_list(images)}.",
                                       f"The words paint pictures of {join_list(images)}.")))
    if n_repeated:
        times = {2: "twice"}.get(top, f"{NUMBER_WORDS.get(top, str(top))} times")
        hook = f"a hook line that recurs {times}"
        if key:
            hook += f", built around the word '{key}',"
        out.append(f"Structurally, {hook} anchors a repeated chorus across "
                   f"{counted(len(content), 'line')} in {counted(stanzas, 'stanza')}.")
    else:
        out.append(f"There is no repeated chorus: {counted(len(content), 'line')} in {counted(stanzas, 'stanza')} "
                   "unfold like a continuous monologue.")
    if lang == "ko" and mixed:
        out.append("The lyrics are mostly in Korean, with English phrases woven into the hooks.")
    elif lang:
        out.append(f"The lyrics are in {LANGUAGE_NAMES.get(lang, lang)}.")
    return limit_lyric_overlap(" ".join(out), lyrics)
