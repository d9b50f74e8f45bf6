"""The documentation the code cites lives in this repository, and config/README.md covers the configs.

Three checks over the source, workflow, test, CI, benchmark and config files:

(a) every ``*.md`` path a docstring or comment mentions exists, relative to
    the repository root or to the citing file (e.g. docs/protocol.md), and
    none cites the internal specification documents that are not shipped;
(b) a citation of a section, ``docs/protocol.md, "Capture"`` (several:
    ``docs/protocol.md, "Episodes" and "Capture"``; unquoted: a heading
    spelled out after the comma) or ``docs/protocol.md#capture``, names a
    heading of that file;
(c) config/README.md documents every key of every shipped config/*.yaml, in
    the section of its top-level key.

Python files are read for their comments and docstrings only (their code
builds file names such as ``{stem}.md``); other text files are read whole.
Output paths (results/, reports/, logs/) and templated names are no citations.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SCANNED_DIRS = ("src", "workflow", "tests", "ci", "bench", "config", "docs")
SCANNED_FILES = ("Snakefile",)
TEXT_SUFFIXES = {".py", ".smk", ".yaml", ".yml", ".md", ".rst", ".sh", ".toml", ".txt", ".cfg"}
SKIPPED_PARTS = {"__pycache__", "golden", ".pytest_cache"}

# The names are split so that this file does not cite them itself.
_SPEC = "|".join(("PROTOCOL", "ANALYSES", "ARCHITECTURE"))
UNSHIPPED_CITATION = re.compile(rf"\b(?:{_SPEC})(?:\.md\b|\s+(?:sections?|stage)\b)")
MD_PATH = re.compile(r"(?<![\w/.{}*-])((?:\.\.?/)*[A-Za-z0-9_][\w./-]*\.md)(#[\w-]+)?(?![\w])")
SECTION_CITATION = re.compile(r"((?:\.\./)*docs/[\w-]+\.md)(?:#([\w-]+)|(,\s+))?")
QUOTED = re.compile(r'"([^"\n]+)"')
OUTPUT_PREFIXES = ("results/", "reports/", "logs/")
# Config sections whose keys are names the user chooses, not config keys.
NAMED_ENTRIES = {("models",), ("abilities",), ("abilities", "*"), ("synthetic", "coupling")}


# --------------------------------------------------------------------------- reading

def scanned_paths(root: Path = REPO) -> list[Path]:
    """Every text file the checks read, sorted."""
    paths = [root / name for name in SCANNED_FILES if (root / name).is_file()]
    for folder in SCANNED_DIRS:
        for path in sorted((root / folder).rglob("*")):
            parts = set(path.relative_to(root).parts)
            if (path.is_file() and path.suffix in TEXT_SUFFIXES and not parts & SKIPPED_PARTS
                    and not any(p.endswith(".egg-info") for p in parts)):
                paths.append(path)
    return paths


def python_prose(text: str) -> str:
    """The comments and docstrings (any string statement) of a Python source, one per line."""
    parts = []
    for tok in tokenize.generate_tokens(io.StringIO(text).readline):
        if tok.type == tokenize.COMMENT:
            parts.append(tok.string.lstrip("#"))
    for node in ast.walk(ast.parse(text)):
        body = getattr(node, "body", None)
        for stmt in body if isinstance(body, list) else []:
            if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) and isinstance(stmt.value.value, str):
                parts.append(stmt.value.value)
    return "\n".join(parts)


def prose(path: Path) -> str:
    """What the checks read of a file: a Python file's comments and docstrings, any other file whole."""
    text = path.read_text(encoding="utf-8")
    return python_prose(text) if path.suffix == ".py" else text


def flat(text: str) -> str:
    """``text`` with comment markers and line breaks folded into single spaces (citations may wrap)."""
    return re.sub(r"\s+", " ", re.sub(r"\n[ \t]*#+:?", "\n", text))


# --------------------------------------------------------------------------- headings

def slug(heading: str) -> str:
    """A heading's anchor as GitHub makes it: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def headings(path: Path) -> list[str]:
    """The Markdown headings of a file (outside code fences), in order."""
    out, fenced = [], False
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and (m := re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)):
            out.append(m.group(1))
    return out


def cited_sections(rest: str) -> list[str] | None:
    """The section names a citation gives after its comma: quoted names joined by "and" or commas, or None."""
    names, pos = [], 0
    while (m := QUOTED.match(rest, pos)) is not None:
        names.append(m.group(1))
        sep = re.match(r"\s*(?:,|and|,\s*and)\s*(?=\")", rest[m.end():])
        if not sep:
            break
        pos = m.end() + sep.end()
    return names or None


# --------------------------------------------------------------------------- the checks

def exists(name: str, source: Path, root: Path = REPO) -> bool:
    """Whether a cited path exists relative to the repository root or to the citing file."""
    return (root / name).exists() or (source.parent / name).exists()


def citation_problems(path: Path, text: str, root: Path = REPO) -> list[str]:
    """Every problem of (a) and (b) in the prose ``text`` of ``path``."""
    where = path.relative_to(root) if path.is_relative_to(root) else path
    problems = [f"{where}: cites a document that is not in the repository: {m.group(0)!r}"
                for m in UNSHIPPED_CITATION.finditer(text)]
    for m in MD_PATH.finditer(text):
        name = m.group(1)
        before = text[max(0, m.start() - 3):m.start()]
        if name.startswith(OUTPUT_PREFIXES) or "://" in before or ".com/" in name or ".org/" in name:
            continue
        if not exists(name, path, root):
            problems.append(f"{where}: cites {name}, which does not exist")
    body = flat(text)
    for m in SECTION_CITATION.finditer(body):
        doc, anchor, comma = m.groups()
        rest = body[m.end():m.end() + 200] if comma else None
        target = (root / doc) if (root / doc).is_file() else (path.parent / doc)
        if not target.is_file() or (anchor is None and rest is None):
            continue  # a missing file is reported above; a bare mention names no section
        known = headings(target)
        if anchor is not None:
            if anchor not in {slug(h) for h in known}:
                problems.append(f"{where}: {doc}#{anchor} names no heading of {doc}")
            continue
        names = cited_sections(rest)
        if names is None:
            if not rest[:1].isupper():
                continue  # "docs/protocol.md, which ...": prose, not a section
            if not any(rest.startswith(h) and not rest[len(h):len(h) + 1].isalnum() for h in known):
                problems.append(f"{where}: {doc}, {rest[:40]!r}... names no heading of {doc}")
            continue
        problems += [f"{where}: {doc}, {n!r} names no heading of {doc}" for n in names if n not in known]
    return problems


def anchor_problems(path: Path) -> list[str]:
    """Links ``](#anchor)`` inside a Markdown file that name none of its headings."""
    known = {slug(h) for h in headings(path)}
    return [f"{path.name}: link #{a} names no heading" for a in re.findall(r"\]\(#([\w-]+)\)", path.read_text())
            if a not in known]


def config_keys(value: object, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Every key path of a config (list items walked; ``*`` stands for a user-chosen name)."""
    if isinstance(value, dict):
        named = path in NAMED_ENTRIES
        for key, item in value.items():
            step = "*" if named else str(key)
            if not named:
                yield (*path, step)
            yield from config_keys(item, (*path, step))
    elif isinstance(value, list):
        for item in value:
            yield from config_keys(item, path)


def readme_sections(text: str) -> dict[str, set[str]]:
    """Per top-level key of config/README.md (its ``## `key` `` heading): the identifiers in its code spans."""
    sections: dict[str, set[str]] = {}
    current = None
    for line in text.splitlines():
        if m := re.match(r"##\s+`([\w.]+)`\s*$", line):
            current = m.group(1)
            sections.setdefault(current, set())
        elif line.startswith("## "):
            current = None
        if current is not None:
            for span in re.findall(r"`([^`]+)`", line):
                sections[current].update(re.findall(r"\w+", span))
    return sections


def config_readme_problems(root: Path = REPO) -> list[str]:
    """(c): keys of the shipped configs that config/README.md does not document."""
    readme = root / "config" / "README.md"
    if not readme.is_file():
        return ["config/README.md is missing"]
    text = readme.read_text(encoding="utf-8")
    sections = readme_sections(text)
    spans = set(re.findall(r"`([^`]+)`", text))
    problems = []
    for cfg in sorted((root / "config").glob("*.yaml")):
        if cfg.name not in spans:
            problems.append(f"config/README.md does not compare {cfg.name}")
        for key in config_keys(yaml.safe_load(cfg.read_text(encoding="utf-8")) or {}):
            top, leaf = key[0], key[-1]
            if top not in sections:
                problems.append(f"config/README.md has no section `{top}` (from {cfg.name})")
            elif leaf != "*" and leaf not in sections[top]:
                problems.append(f"config/README.md, section `{top}`, misses {'.'.join(key)} (from {cfg.name})")
    return sorted(set(problems))


# --------------------------------------------------------------------------- tests

def test_citations_name_documents_and_sections_in_the_repository():
    problems = []
    for path in scanned_paths():
        problems += citation_problems(path, prose(path))
    assert not problems, "\n".join(problems)


def test_markdown_anchors_name_headings():
    docs = sorted((REPO / "docs").glob("*.md")) + [REPO / "config" / "README.md"]
    problems = [p for path in docs for p in anchor_problems(path)]
    assert not problems, "\n".join(problems)


def test_config_readme_documents_every_shipped_key():
    problems = config_readme_problems()
    assert not problems, "\n".join(problems)


def test_the_docs_exist_and_cover_their_subjects():
    expected = {
        "protocol.md": ["Tasks", "Prompts and presets", "Chat templates", "Capture", "Conditions", "Passive reader",
                        "Lag-k", "Datasets and splits", "Ridge maps and SyncR2", "Reproducible sampling",
                        "Prefix reuse", "GGUF checkpoints"],
        "analyses.md": ["The judge", "Prompt styles", "Backends", "Parse rules", "Aggregation", "Invalid replies",
                        "Social performance", "Statistics", "Partial correlation", "Minimum pair counts",
                        "Relationship closeness", "Robustness", "Surrogate null", "Known-answer run"],
        "architecture.md": ["Stages", "Import rule", "Rules and jobs", "Data contracts", "Rerun contract"],
    }
    for name, wanted in expected.items():
        missing = sorted(set(wanted) - set(headings(REPO / "docs" / name)))
        assert not missing, f"docs/{name} lacks section(s) {missing}"


@pytest.mark.parametrize("text, bad", [
    ('"""See ' + "PROTOCOL" + '.md section 3."""', True),
    ('"""See ' + "ANALYSES" + ' section 5."""', True),
    ('"""See docs/nowhere.md."""', True),
    ('"""See docs/protocol.md, "No such section"."""', True),
    ('"""See docs/protocol.md#no-such-anchor."""', True),
    ('"""See docs/protocol.md, Nothing like it."""', True),
    ('"""See docs/protocol.md, "Capture" and "Lag-k"."""', False),
    ('"""See docs/protocol.md, "Capture" and "Lag k"."""', True),
    ('"""See (docs/protocol.md,\n    "Ridge maps and SyncR2")."""', False),
    ('# docs/protocol.md, Prefix reuse: the caches\nx = 1', False),
    ('"""See docs/protocol.md#passive-reader and README.md."""', False),
    ('out = f"{stem}.md"  # writes reports/tables/synchrony.md', False),
])
def test_the_checker_itself(tmp_path, text, bad):
    source = tmp_path / "src" / "example.py"
    source.parent.mkdir()
    source.write_text(text + "\n")
    problems = citation_problems(source, python_prose(source.read_text()), root=REPO)
    assert bool(problems) is bad, problems
