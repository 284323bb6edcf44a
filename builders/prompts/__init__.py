"""Versioned prompt templates for the LLM stages (one YAML file per stage and version).

A template's version string carries a digest of its text, so editing a prompt without
bumping ``version`` still changes the stage key and provenance: old results are never
passed off as answers to the new prompt. A prompt-set version N uses, for each stage, the newest
template with version <= N, so bumping one stage's prompt leaves the others' keys (and their
cached answers) as they were. Placeholders use ``${name}`` (``string.Template``)
because prompts quote JSON, whose braces would fight ``str.format``.
"""

from __future__ import annotations

import functools
import hashlib
import string
from dataclasses import dataclass
from pathlib import Path

import yaml

HERE = Path(__file__).parent
DEFAULT_VERSION = 2  # v2: mv_description at the paper's length, with a closing sentence


@dataclass(frozen=True)
class PromptTemplate:
    stage: str
    version: int
    system: str
    user: str
    parts: dict[str, str]  # optional named snippets (per-frame wording, contact-sheet note, re-ask)
    digest: str

    @property
    def version_id(self) -> str:
        return f"{self.stage}.v{self.version}+{self.digest[:8]}"

    def render(self, text: str, **fields: str) -> str:
        return string.Template(text).substitute(**fields)

    def user_text(self, **fields: str) -> str:
        return self.render(self.user, **fields).strip()

    def part(self, name: str, **fields: str) -> str:
        return self.render(self.parts[name], **fields).strip()


@functools.lru_cache(maxsize=None)
def load(stage: str, version: int = DEFAULT_VERSION) -> PromptTemplate:
    """The stage's template in prompt set ``version``: its newest file at or below that version."""
    found = [v for v in range(int(version), 0, -1) if (HERE / f"{stage}.v{v}.yaml").is_file()]
    if not found:
        raise FileNotFoundError(f"no prompt template {stage}.v{version}.yaml (or older) in {HERE}")
    version = found[0]
    path = HERE / f"{stage}.v{version}.yaml"
    raw = path.read_bytes()
    data = yaml.safe_load(raw)
    if data.get("stage") != stage or int(data.get("version", -1)) != version:
        raise ValueError(f"{path.name}: stage/version inside the file do not match its name")
    return PromptTemplate(stage=stage, version=version, system=data["system"].strip(), user=data["user"],
                          parts=dict(data.get("parts") or {}), digest=hashlib.sha256(raw).hexdigest())


def available() -> list[str]:
    return sorted(p.name for p in HERE.glob("*.v*.yaml"))
