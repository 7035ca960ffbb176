"""The README and the guide in docs/: links that resolve, a README that stays short, and the README's install
and test commands being the ones CI runs.

- Every relative link and image in README.md and docs/*.md (outside code) names a file of the repository, and
  a `#fragment` into a Markdown file names one of its headings (GitHub's anchor rule).
- README.md is at most 250 lines, and its one picture is a PNG under docs/img/ below 300 kB.
- `.ci/run` runs, between its `# --- README: install ---` and `# --- README: run the tests ---` markers and
  after the latter, commands that each stand as a line in one of the README's bash blocks (CI checks that the
  documented install and tests work; a README edit that changed them would no longer be what CI runs).
- The guide names only benchmark scripts that exist, each row of performance.md's table carries its command,
  and no page quotes a claim's verdict: the verdicts live in data/reproduce/claims.json alone.
"""
from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = sorted((REPO / "docs").glob("*.md"))
PAGES = [REPO / "README.md", *DOCS]
LINK = re.compile(r"(!?)\[((?:[^\[\]]|\[[^\]]*\])*)\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^\s*(```|~~~)")
VERDICTS = ("agrees", "disagrees", "inconclusive")


def _prose(text: str) -> str:
    """The Markdown without fenced code blocks and inline code spans (links there are not links)."""
    lines, inside = [], False
    for line in text.splitlines():
        if FENCE.match(line):
            inside = not inside
            lines.append("")
            continue
        lines.append("" if inside else re.sub(r"`[^`]*`", "``", line))
    return "\n".join(lines)


def _links(path: Path) -> list[tuple[bool, str]]:
    """(is an image, target) of every link in `path`'s prose."""
    return [(bang == "!", target) for bang, _, target in LINK.findall(_prose(path.read_text(encoding="utf-8")))]


def _anchors(path: Path) -> set[str]:
    """GitHub's heading anchors of a Markdown file: lower case, punctuation dropped, spaces to hyphens."""
    seen: dict[str, int] = {}
    out = set()
    for line in _prose(path.read_text(encoding="utf-8")).splitlines():
        if m := re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line):
            slug = re.sub(r"[^\w\- ]", "", m.group(1).replace("``", "").strip().lower()).replace(" ", "-")
            n = seen.get(slug, 0)
            seen[slug] = n + 1
            out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def _bash_lines(text: str) -> set[str]:
    """Every command line of the bash blocks of a Markdown text, trailing comments and spaces dropped."""
    lines, inside = set(), False
    for line in text.splitlines():
        if FENCE.match(line):
            inside = line.strip().lstrip("`~").strip() in ("bash", "sh", "shell") if not inside else False
            continue
        if inside and (command := line.split(" #")[0].strip()):
            lines.add(command)
    return lines


def _ci_commands() -> list[str]:
    """The commands .ci/run runs as the README's install and tests, one by one (&& split, quiet flags and
    redirections dropped, `apt-get update` left out: the README's reader may need it, and CI's is no contract)."""
    text = (REPO / ".ci/run").read_text(encoding="utf-8")
    start, tests = "# --- README: install ---", "# --- README: run the tests ---"
    assert start in text and tests in text, ".ci/run lost its README markers; keep them beside the commands"
    commands = []
    for line in text[text.index(start):].splitlines():
        line = line.split(" #")[0].strip()
        if not line or line.startswith("#"):
            continue
        for part in line.split("&&"):
            words = [w for w in shlex.split(part) if w not in ("-qq", "-q") and not w.startswith((">", "2>"))]
            if words and words[:2] != ["apt-get", "update"]:
                commands.append(" ".join(words))
    return commands


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_resolve(page):
    bad = []
    for _, target in _links(page):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("//"):
            continue  # https:, mailto: ...: not a file of the repository
        file, _, fragment = target.partition("#")
        dest = (page.parent / file).resolve() if file else page
        if REPO not in dest.parents and dest != REPO:
            bad.append(f"{target} (outside the repository)")
        elif not dest.exists():
            bad.append(f"{target} (no such file)")
        elif fragment and dest.suffix == ".md" and fragment not in _anchors(dest):
            bad.append(f"{target} (no heading #{fragment} in {dest.relative_to(REPO)})")
    assert not bad, f"{page.relative_to(REPO)}: broken links: {bad}"


def test_link_finder_sees_links_and_skips_code(tmp_path):
    page = tmp_path / "x.md"
    page.write_text("See [a](a.md) and ![pic](img/p.png).\n`[no](code.md)`\n```bash\n[no](fenced.md)\n```\n"
                    "[t](t.md#a-heading) [w](https://example.org)\n", encoding="utf-8")
    assert _links(page) == [(False, "a.md"), (True, "img/p.png"), (False, "t.md#a-heading"),
                            (False, "https://example.org")]
    (tmp_path / "h.md").write_text("# 1. The network\n## Reproduce the paper's claims\n## Notes\n## Notes\n")
    assert _anchors(tmp_path / "h.md") == {"1-the-network", "reproduce-the-papers-claims", "notes", "notes-1"}


def test_readme_is_short_with_one_small_picture():
    readme = REPO / "README.md"
    assert len(readme.read_text(encoding="utf-8").splitlines()) <= 250, "README.md: at most 250 lines"
    images = [t for is_image, t in _links(readme) if is_image]
    assert len(images) == 1, f"README.md: one picture of the dashboard, found {images}"
    picture = (REPO / images[0]).resolve()
    assert picture.parent == REPO / "docs" / "img" and picture.suffix == ".png"
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f"{images[0]} is not a PNG"
    assert picture.stat().st_size < 300_000, f"{images[0]}: {picture.stat().st_size} bytes, keep it < 300 kB"


def test_readme_commands_are_what_ci_runs():
    commands = _ci_commands()
    assert any(c.startswith("pip install torch==") for c in commands) and "python -m pytest" in commands
    documented = _bash_lines((REPO / "README.md").read_text(encoding="utf-8"))
    missing = [c for c in commands if c not in documented]
    assert not missing, f".ci/run runs commands the README's bash blocks do not show: {missing}"


def test_guide_names_existing_benchmarks_and_every_figure_has_its_command():
    named = set()
    for page in PAGES:
        named |= set(re.findall(r"benchmarks/([\w-]+\.py)", page.read_text(encoding="utf-8")))
    missing = sorted(n for n in named if not (REPO / "benchmarks" / n).exists())
    assert named and not missing, f"the guide names benchmark scripts that do not exist: {missing}"
    rows = [r for r in (REPO / "docs/performance.md").read_text(encoding="utf-8").splitlines()
            if r.startswith("|") and not r.startswith(("| what", "|---"))]
    assert rows, "docs/performance.md lost its table of figures"
    for row in rows:
        command = row.rstrip(" |").rsplit("|", 1)[-1]
        assert "`" in command, f"performance.md: a figure without the command that makes it: {row[:80]}"


def test_no_page_quotes_a_claim_verdict():
    """The guide points to the Claims page and data/reproduce/claims.json; a verdict copied into prose goes
    stale as soon as the claims are rerun (issue 30: the old README's coupling table had)."""
    claims = json.loads((REPO / "data/reproduce/claims.json").read_text(encoding="utf-8"))
    ids = {c["id"] for c in claims["claims"]} if isinstance(claims, dict) else {c["id"] for c in claims}
    assert ids
    quoted = []
    for page in PAGES:
        if page.name == "theory.md":
            continue  # the science: its sections explain each claim, they do not carry the bundle's verdicts
        for n, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
            words = set(re.findall(r"[\w-]+", line))
            if words & ids and words & set(VERDICTS):
                quoted.append(f"{page.relative_to(REPO)}:{n}")
    assert not quoted, f"claim verdicts quoted (point to the Claims page instead): {quoted}"


def test_nothing_points_outside_the_repository():
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        assert "/work/shared" not in text and "../shared" not in text, f"{page.relative_to(REPO)} names a team folder"
