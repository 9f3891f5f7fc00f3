"""README.md and docs/ are written for users: README is short and opens with the two commands, every file of
the repository they name exists, every link and anchor leads somewhere, and none of the project's working
words appear."""

from __future__ import annotations

import re
import subprocess
import tomllib
from pathlib import Path

from bridge.config import load_characteristics
from bridge.sparkplug.topics import NAMESPACE
from tests.processes import REPO

README = REPO / "README.md"
DOCS = REPO / "docs"
MAX_README_BYTES = 30 * 1024
DEMO_COMMAND = "spc-bridge demo --port 11883 --ws-port 19001 --dashboard-port 18080"
TEST_COMMAND = "bash .ci/run"
FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", flags=re.DOTALL | re.MULTILINE)
TOML_BLOCK = re.compile(r"^```toml\n(.*?)^```", flags=re.DOTALL | re.MULTILINE)
INLINE_CODE = re.compile(r"`([^`\n]+)`")
LINK = re.compile(r"\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6} +(.+?) *$", flags=re.MULTILINE)
# One path-shaped token: folders and a file name, optionally a test's ::name.
PATH = re.compile(r"[\w.-]+(?:/[\w.-]+)*/?(?:::\w+)?")
# A bare file name (no folder) with one of these endings names a file of the repository.
FILE_ENDINGS = (".py", ".md", ".toml", ".conf", ".c", ".service", ".example", ".html", ".mjs", ".json", ".cfg")
# The project's own working words, which mean nothing to a user (`--seed`, the demo's option, is a user's word).
INTERNAL = re.compile(r"\bseeds?\b|\bhelpers?\b|\blead\b|\bissues? \d+|\bshared/", flags=re.IGNORECASE)


def pages() -> list[Path]:
    """README.md and every page under docs/."""
    return [README, *sorted(DOCS.glob("*.md"))]


def repository_files() -> set[str]:
    """The repository's files and folders as a fresh clone has them (tracked and untracked, none git ignores)."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, check=True, timeout=60).stdout.decode()
    files = {name for name in listed.split("\0") if name and (REPO / name).exists()}
    folders = {str(parent) for name in files for parent in Path(name).parents if str(parent) != "."}
    return files | folders


def topic_roots() -> set[str]:
    """First levels of the MQTT topics the pages cite: the bridge's own, Sparkplug's and the example
    characteristics'."""
    example = tomllib.loads((REPO / "characteristics.example.toml").read_text(encoding="utf-8"))
    topics = (table["topic"] for table in example["characteristic"] if "topic" in table)
    return {"spc", NAMESPACE} | {topic.split("/")[0] for topic in topics}


def named_paths(text: str, top_level: set[str], roots: set[str]) -> set[str]:
    """Repository paths `text` names: in inline code, as a lone path; in code blocks, as words under a top-level
    folder of the repository. MQTT topics (under `roots`) and absolute paths are not the repository's."""
    names = set()
    blocks = FENCE.findall(text)
    for block in blocks:
        for word in re.split(r"[\s'\"=()]+", block):
            if PATH.fullmatch(word) and "/" in word and word.split("/")[0] in top_level:
                names.add(word)
    prose = FENCE.sub("", text)
    for span in INLINE_CODE.findall(prose):
        if not PATH.fullmatch(span) or span.split("/")[0] in roots:
            continue
        if "/" in span or span.split("::")[0].endswith(FILE_ENDINGS):
            names.add(span)
    return names


def exists(name: str, files: set[str]) -> bool:
    """Whether `name` (a path from the repository's root, or a bare file name anywhere in it, optionally with a
    test's ::name) is in `files`, and the test it names is defined there."""
    path, _, test = name.partition("::")
    path = path.rstrip("/")
    if "/" in path:
        found = [path] if path in files else []
    else:
        found = [file for file in files if Path(file).name == path]
    if not test:
        return bool(found)
    return any(re.search(rf"^\s*(?:async )?def {test}\(|^class {test}\b", (REPO / file).read_text(encoding="utf-8"),
                         flags=re.MULTILINE) for file in found)


def anchor(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_readme_is_short() -> None:
    size = len(README.read_bytes())
    assert size < MAX_README_BYTES, f"README.md is {size} bytes: move long material under docs/"


def test_the_two_commands_are_the_first_code_block() -> None:
    first = FENCE.search(README.read_text(encoding="utf-8"))
    assert first is not None, "README.md has no code block"
    commands = [line.strip() for line in first.group(1).splitlines() if line.strip() and not line.lstrip().startswith("#")]
    assert len(commands) == 2, commands
    demo, tests = commands
    assert "pip install" in demo and demo.endswith(DEMO_COMMAND), demo
    assert tests == TEST_COMMAND, tests
    assert (REPO / ".ci/run").is_file()


def test_every_file_named_exists() -> None:
    files = repository_files()
    top_level = {name for name in files if "/" not in name}
    roots = topic_roots()
    missing = [f"{page.relative_to(REPO)}: {name}" for page in pages()
               for name in sorted(named_paths(page.read_text(encoding="utf-8"), top_level, roots))
               if not exists(name, files)]
    assert not missing, "not in the repository:\n" + "\n".join(missing)


def test_every_link_leads_somewhere() -> None:
    broken = []
    for page in pages():
        for target in LINK.findall(page.read_text(encoding="utf-8")):
            if re.match(r"[a-z]+:", target):
                continue  # https:, mailto:
            path, _, fragment = target.partition("#")
            linked = (page.parent / path).resolve() if path else page
            if not linked.exists():
                broken.append(f"{page.relative_to(REPO)}: {target}")
            elif fragment and linked.suffix == ".md":
                anchors = {anchor(heading) for heading in HEADING.findall(FENCE.sub("", linked.read_text()))}
                if fragment not in anchors:
                    broken.append(f"{page.relative_to(REPO)}: {target} (no such heading)")
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_readme_links_every_page_of_docs() -> None:
    readme = README.read_text(encoding="utf-8")
    unlinked = [page.name for page in sorted(DOCS.glob("*.md")) if f"](docs/{page.name}" not in readme]
    assert DOCS.is_dir() and not unlinked, f"README.md links no docs/ page named {unlinked}"


def test_no_internal_words() -> None:
    found = [f"{page.relative_to(REPO)}: {match.group(0)!r} in {text[max(0, match.start() - 40):match.end() + 40]!r}"
             for page in pages()
             for text in [page.read_text(encoding="utf-8").replace("--seed", "")]
             for match in INTERNAL.finditer(text)]
    assert not found, "words of the project's own history:\n" + "\n".join(found)


def test_every_characteristics_example_loads(tmp_path: Path) -> None:
    """Each TOML block of the pages is a characteristics file the bridge accepts."""
    blocks = [(page, block) for page in pages() for block in TOML_BLOCK.findall(page.read_text(encoding="utf-8"))]
    assert blocks, "README.md shows no characteristics file"
    for index, (page, block) in enumerate(blocks):
        path = tmp_path / f"{index}.toml"
        path.write_text(block, encoding="utf-8")
        assert load_characteristics(path), f"{page.relative_to(REPO)}: its TOML block configures nothing"
