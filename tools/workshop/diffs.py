"""Diffs between two step folders: unified text, word-level colour, and HTML.

Databases, caches and virtualenvs are left out (workshop.steps.is_ignored).
"""

import difflib
import html
import re
from pathlib import Path

from workshop.file_kinds import lesson_order
from workshop.steps import Step

RED, GREEN, CYAN, BOLD, RESET = "\033[31m", "\033[32m", "\033[36m", "\033[1m", "\033[0m"
# Reverse video on top of the line's colour marks the words that changed.
WORD_ON, WORD_OFF = "\033[7m", "\033[27m"


def read_lines(path: Path) -> list[str]:
    if not path.exists():
        return []
    try:
        return path.read_text(encoding="utf-8").splitlines(keepends=True)
    except UnicodeDecodeError:
        return [f"(binary file, {path.stat().st_size} bytes)\n"]


def changed_pairs(old: Step, new: Step):
    """(name, old lines, new lines) for each file that differs: the code first, then
    migrations, tests and the README, so that a diff opens with the lesson itself."""
    for name in sorted(set(old.files()) | set(new.files()), key=lesson_order):
        old_lines, new_lines = read_lines(old.path / name), read_lines(new.path / name)
        if old_lines != new_lines:
            yield name, old_lines, new_lines


def step_diff(old: Step, new: Step) -> tuple[list[str], list[str]]:
    """(names of the files that differ, unified diff lines) between two step folders."""
    changed, lines = [], []
    for name, old_lines, new_lines in changed_pairs(old, new):
        changed.append(name)
        lines.extend(
            difflib.unified_diff(
                old_lines,
                new_lines,
                fromfile=f"{old.name}/{name}"
                if (old.path / name).exists()
                else "/dev/null",
                tofile=f"{new.name}/{name}"
                if (new.path / name).exists()
                else "/dev/null",
            )
        )
    return changed, lines


TOKEN = re.compile(r"\w+|\s+|[^\w\s]")


def mark_changed_words(removed: str, added: str) -> tuple[str, str]:
    """The two lines with the words that differ between them in reverse video."""
    old_tokens, new_tokens = TOKEN.findall(removed), TOKEN.findall(added)
    old_out, new_out = [], []
    matcher = difflib.SequenceMatcher(None, old_tokens, new_tokens, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        old_part, new_part = "".join(old_tokens[i1:i2]), "".join(new_tokens[j1:j2])
        if tag == "equal":
            old_out.append(old_part)
            new_out.append(new_part)
        else:
            old_out.append(f"{WORD_ON}{old_part}{WORD_OFF}" if old_part else "")
            new_out.append(f"{WORD_ON}{new_part}{WORD_OFF}" if new_part else "")
    return "".join(old_out), "".join(new_out)


def colour_lines(lines: list[str], words: bool) -> list[str]:
    """Colour a unified diff; with words=True, also mark the changed words."""
    out = []
    removed: list[str] = []
    added: list[str] = []

    def flush():
        if words:
            for index in range(min(len(removed), len(added))):
                removed[index], added[index] = mark_changed_words(
                    removed[index], added[index]
                )
        out.extend(f"{RED}-{line}{RESET}" for line in removed)
        out.extend(f"{GREEN}+{line}{RESET}" for line in added)
        removed.clear()
        added.clear()

    for line in lines:
        line = line.rstrip("\n")
        if line.startswith(("---", "+++")):
            flush()
            out.append(f"{BOLD}{line}{RESET}")
        elif line.startswith("-"):
            removed.append(line[1:])
        elif line.startswith("+"):
            added.append(line[1:])
        else:
            flush()
            out.append(f"{CYAN}{line}{RESET}" if line.startswith("@@") else line)
    flush()
    return out


def html_page(old: Step, new: Step) -> str:
    """A self-contained page (inline style, no scripts) with a side-by-side table per file."""
    differ = difflib.HtmlDiff(tabsize=4, wrapcolumn=72)
    sections = []
    names = []
    for name, old_lines, new_lines in changed_pairs(old, new):
        names.append(name)
        table = differ.make_table(
            old_lines,
            new_lines,
            f"{old.name}/{name}",
            f"{new.name}/{name}",
            context=True,
            numlines=4,
        )
        sections.append(
            f'<h2 id="{html.escape(name)}">{html.escape(name)}</h2>\n{table}'
        )
    contents = "".join(
        f'<li><a href="#{html.escape(name)}">{html.escape(name)}</a></li>'
        for name in names
    )
    title = f"{old.name} → {new.name}"
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{html.escape(title)}</title>
<style>
  body {{ font-family: system-ui, sans-serif; margin: 2rem; font-size: 18px; }}
  table.diff {{ font-family: ui-monospace, monospace; font-size: 14px; border-collapse: collapse; width: 100%; }}
  table.diff td {{ padding: 0 0.4em; vertical-align: top; white-space: pre-wrap; }}
  .diff_header {{ background: #eee; color: #777; text-align: right; }}
  td.diff_next {{ display: none; }}
  .diff_add {{ background: #d7f5d7; }}
  .diff_chg {{ background: #fff1b8; }}
  .diff_sub {{ background: #fbd3d3; }}
  h2 {{ margin-top: 2.5rem; border-bottom: 1px solid #ccc; }}
</style>
</head>
<body>
<h1>{html.escape(title)}</h1>
<p>{len(names)} file(s) differ:</p>
<ul>{contents}</ul>
{"".join(sections)}
</body>
</html>
"""
