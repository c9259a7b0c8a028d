"""The prompt template file format: plain Markdown a quant can edit without touching code.

A task file (prompts/templates/<task>.md) is a system prompt followed by user-prompt sections:

    <!-- system -->
    You are ... $schema
    <!-- section name=market priority=required -->
    ## Market
    $symbol on $timeframe bars ...
    <!-- section name=regime_bear priority=70 when=regime:bear -->
    ...

- Text is `string.Template`: `$name` / `${name}` are filled in, `$$` is a literal dollar sign.
  Unknown placeholders are an error at load time, naming the file and section.
- `priority` is an integer (higher = kept longer when the prompt must shrink to fit a token
  budget) or `required` (never dropped). The system prompt is never dropped.
- `when` limits a section to some contexts; comma-separated conditions must all hold:
  `regime:bear|sideways`, `style:scalping`, `timeframe:1w`, a flag (`position`, `equity`, `stop`,
  `patterns`), or a negated flag (`!position`).
- Any other HTML comment (`<!-- ... -->`) is a note for editors and is not sent.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from string import Template
from typing import get_args

from prompts.context import REGIMES, TIMEFRAMES, Style

TEMPLATE_DIR = Path(__file__).parent / "templates"
REQUIRED = 10**9  # priority of `required` sections: above any number an editor would write

_MARKER = re.compile(r"^\s*<!--\s*(system|section)\b(.*?)-->\s*$")
_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)
_ATTR = re.compile(r"(\w+)=(\S+)")
_KEYED: dict[str, tuple[str, ...]] = {
    "regime": REGIMES,
    "style": get_args(Style),
    "timeframe": TIMEFRAMES,
}
FLAGS = ("position", "equity", "stop", "patterns")


class TemplateError(ValueError):
    """A template file is malformed (message names the file, section and problem)."""


@dataclass(frozen=True)
class Section:
    """One user-prompt section: dropped as a whole, never cut mid-sentence."""

    name: str
    priority: int
    when: tuple[str, ...]
    text: Template

    @property
    def required(self) -> bool:
        return self.priority >= REQUIRED

    def applies(self, facts: dict[str, str], flags: set[str]) -> bool:
        """Whether every `when` condition holds for a context's facts and flags."""
        for cond in self.when:
            if cond.startswith("!"):
                if cond[1:] in flags:
                    return False
            elif ":" in cond:
                key, values = cond.split(":", 1)
                if facts[key] not in values.split("|"):
                    return False
            elif cond not in flags:
                return False
        return True


@dataclass(frozen=True)
class TaskTemplate:
    """A parsed task file."""

    path: Path
    system: Template
    sections: tuple[Section, ...]


def load_template(path: Path, placeholders: frozenset[str]) -> TaskTemplate:
    """Parse and check one task file (cached per path; see `reload_templates`)."""
    return _load(Path(path), placeholders)


def reload_templates() -> None:
    """Forget parsed files, so template edits take effect in a running notebook or server."""
    _load.cache_clear()


@lru_cache(maxsize=32)
def _load(path: Path, placeholders: frozenset[str]) -> TaskTemplate:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise TemplateError(f"{path}: cannot read template: {exc}") from exc
    system: Template | None = None
    sections: list[Section] = []
    head: tuple[str, str, int] | None = None  # (kind, attrs, line number) of the open block
    body: list[str] = []

    def close() -> None:
        nonlocal system
        if head is None:
            if _clean(body):
                raise TemplateError(
                    f"{path}: text before the first <!-- system --> or section marker"
                )
            return
        kind, attrs, lineno = head
        text = _template(path, kind, lineno, _clean(body), placeholders)
        if kind == "system":
            if system is not None:
                raise TemplateError(f"{path}:{lineno}: a second <!-- system --> block")
            system = text
        else:
            sections.append(_section(path, lineno, attrs, text, {s.name for s in sections}))

    for lineno, line in enumerate(lines, start=1):
        m = _MARKER.match(line)
        if m:
            close()
            head, body = (m.group(1), m.group(2).strip(), lineno), []
        else:
            body.append(line)
    close()
    if system is None:
        raise TemplateError(f"{path}: no <!-- system --> block")
    return TaskTemplate(path, system, tuple(sections))


def _clean(lines: list[str]) -> str:
    """Block text without editor notes, outer blank lines or runs of blank lines."""
    text = _COMMENT.sub("", "\n".join(lines))
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def _template(
    path: Path, kind: str, lineno: int, text: str, placeholders: frozenset[str]
) -> Template:
    tmpl = Template(text)
    where = f"{path}:{lineno} ({kind})"
    if not tmpl.is_valid():
        raise TemplateError(f"{where}: a bad '$' — write $$ for a literal dollar sign")
    unknown = sorted(set(tmpl.get_identifiers()) - placeholders)
    if unknown:
        raise TemplateError(
            f"{where}: unknown placeholder(s) {unknown}; known: {sorted(placeholders)}"
        )
    if not text:
        raise TemplateError(f"{where}: empty block")
    return tmpl


def _section(path: Path, lineno: int, attrs: str, text: Template, taken: set[str]) -> Section:
    where = f"{path}:{lineno}"
    found = dict(_ATTR.findall(attrs))
    leftover = _ATTR.sub("", attrs).strip()
    if leftover or set(found) - {"name", "priority", "when"}:
        raise TemplateError(f"{where}: marker takes name=, priority= and when= only, got {attrs!r}")
    name = found.get("name")
    if not name:
        raise TemplateError(f"{where}: section without name=")
    if name in taken:
        raise TemplateError(f"{where}: section name {name!r} used twice")
    raw = found.get("priority")
    if raw == "required":
        priority = REQUIRED
    elif raw is not None and raw.isdigit():
        priority = int(raw)
    else:
        raise TemplateError(
            f"{where}: section {name!r} needs priority=<integer> or priority=required"
        )
    when = tuple(c for c in found.get("when", "").split(",") if c)
    for cond in when:
        key = cond.split(":", 1)[0] if ":" in cond else cond.lstrip("!")
        if not (key in _KEYED and ":" in cond) and not (key in FLAGS and ":" not in cond):
            raise TemplateError(
                f"{where}: section {name!r}: bad condition {cond!r}; use {list(_KEYED)} as key:a|b "
                f"or a flag {list(FLAGS)} (optionally negated with !)"
            )
        if ":" in cond:
            bad = [v for v in cond.split(":", 1)[1].split("|") if v not in _KEYED[key]]
            if bad:
                raise TemplateError(
                    f"{where}: section {name!r}: unknown {key} {bad}; one of {list(_KEYED[key])}"
                )
    return Section(name, priority, when, text)
