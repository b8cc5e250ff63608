"""Every command README.md and docs/ show works from a clean clone as written.

The commands are the lines of the fenced ```sh, ```bash and ```console blocks
(in console blocks only the `$ ` lines; a leading `$ ` dropped, comments
stripped, continuation lines joined, here-document bodies skipped). Each one
must resolve:

- `make X` -> X is a rule of the Makefile (variables such as NODE=... are fine);
- `.venv/bin/python -m lab CMD` or `python3 -m lab CMD` -> CMD is in lab.cli.COMMANDS;
- `.venv/bin/ansible-playbook [-i INVENTORY] PLAYBOOK` -> the playbook exists and
  passes `--syntax-check` (with a stand-in for the inventory `make lab-up`
  writes, and never the AWS one);
- `.venv/bin/TOOL` -> the virtualenv has TOOL; `~/.cache/kubeadm-lab/bin/TOOL`
  -> a tool `make setup` links there;
- a bare `python`, `ansible-playbook`, ... fails (Debian 12 has no `python`,
  and Ansible exists only in .venv); other tools only from a short allowlist.

Relative links and their anchors in README.md, CONTRIBUTING.md and docs/ must
point at something that exists.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import re
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from lab.cli import COMMANDS
from lab.paths import REPO

pytestmark = pytest.mark.static

PAGES = sorted([REPO / "README.md", REPO / "CONTRIBUTING.md", *(REPO / "docs").glob("*.md")])
SHELL_BLOCKS = {"sh", "bash", "shell", "console"}

# The tools the project installs: the virtualenv's (this interpreter's) and the
# pinned builds `make setup` links into $LAB_CACHE/bin.
VENV_BIN = Path(sys.executable).parent
CACHE_BIN_PREFIX = "~/.cache/kubeadm-lab/bin/"
CACHE_TOOLS = {"helm"}
# Other programs a page may name: the user's own, or Debian 12's base system.
ALLOWED = {"cat", "cd", "curl", "export", "git", "gzip", "mkdir"}
# Only in .venv or the cache, or absent from Debian 12: never bare.
NOT_BARE = {
    "python",
    "pip",
    "pytest",
    "ruff",
    "yamllint",
    "molecule",
    "helm",
    "ansible",
    "ansible-playbook",
    "ansible-inventory",
    "ansible-galaxy",
    "ansible-doc",
    "ansible-lint",
}
# The inventory `make lab-up` writes (absent in a clean clone) and the AWS one
# (its plugin would call AWS): syntax checks use a stand-in for both.
GENERATED_INVENTORY = "inventory/lab/hosts.yml"
AWS_INVENTORY = "inventory/aws_ec2.yml"
# ansible-playbook options that take a value
PLAYBOOK_OPTIONS_WITH_VALUE = {
    "-i",
    "--inventory",
    "-e",
    "--extra-vars",
    "-l",
    "--limit",
    "-t",
    "--tags",
    "--skip-tags",
    "-u",
    "--user",
    "-f",
    "--forks",
    "--start-at-task",
    "--vault-password-file",
}
OPERATORS = {"&&", "||", ";", "|", "&"}
REDIRECTS = {">", ">>", "<", "<<", "<<-", "2>", "&>"}
ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


@dataclass(frozen=True)
class Command:
    where: str  # page:line
    text: str


# --------------------------------------------------------------------------- reading the pages


def extract_commands(markdown: str, page: str) -> list[Command]:
    commands: list[Command] = []
    language: str | None = None
    pending, started, heredoc = "", 0, ""
    for number, raw in enumerate(markdown.splitlines(), 1):
        line = raw
        fence = re.match(r"^\s*```\s*([\w-]*)", line)
        if fence:
            language = None if language is not None else fence.group(1).lower()
            pending, heredoc = "", ""
            continue
        if language not in SHELL_BLOCKS:
            continue
        if heredoc:
            if line.strip() == heredoc:
                heredoc = ""
            continue
        if not pending:
            if language == "console" and not line.startswith("$ "):
                continue  # output
            line = line.removeprefix("$ ")
            started = number
        if pending:
            line = line.lstrip()
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1].rstrip() + " "
            continue
        text, pending = pending + line, ""
        marker = re.search(r"<<-?\s*['\"]?(\w+)['\"]?", text)
        if marker:
            heredoc = marker.group(1)
        text = strip_comment(text)
        if text:
            commands.append(Command(f"{page}:{started}", text))
    return commands


def strip_comment(text: str) -> str:
    """The command without a trailing `# comment` (a # outside quotes, after a blank)."""
    quote = ""
    for index, char in enumerate(text):
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (index == 0 or text[index - 1].isspace()):
            return text[:index].strip()
    return text.strip()


def segments(text: str) -> list[list[str]]:
    """The simple commands of a line: split at && || ; | &, redirections dropped."""
    lexer = shlex.shlex(text, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = ""
    result: list[list[str]] = [[]]
    skip_next = False
    for token in lexer:
        if skip_next:
            skip_next = False
        elif token in OPERATORS:
            result.append([])
        elif token in REDIRECTS:
            skip_next = True
        else:
            result[-1].append(token)
    return [words for words in result if words]


# --------------------------------------------------------------------------- the Makefile


def makefile_targets(makefile: str) -> set[str]:
    """The targets of the Makefile's rules (not variables, not special targets)."""
    targets: set[str] = set()
    for line in makefile.splitlines():
        rule = re.match(r"^([A-Za-z0-9_./%-]+(?:[ \t]+[A-Za-z0-9_./%-]+)*)[ \t]*::?(?!=)", line)
        if rule:
            targets.update(name for name in rule.group(1).split() if not name.startswith("."))
    return targets


# --------------------------------------------------------------------------- checking a command

SyntaxCheck = Callable[[str, str | None], str | None]


def check_command(command: Command, makefile: str, syntax_check: SyntaxCheck) -> list[str]:
    """What is wrong with one documented command (nothing: an empty list)."""
    problems = []
    for words in segments(command.text):
        # leading VAR=value assignments (LAB_REUSE=1 make test)
        program = next((i for i, word in enumerate(words) if not ASSIGNMENT.match(word)), len(words))
        if words[program:]:
            problem = check_words(words[program:], makefile, syntax_check)
            if problem:
                problems.append(f"{command.where}: `{command.text}`: {problem}")
    return problems


def check_words(words: list[str], makefile: str, syntax_check: SyntaxCheck) -> str | None:  # noqa: PLR0911
    program, args = words[0], words[1:]
    if program == "make":
        targets = makefile_targets(makefile)
        wanted = [a for a in args if not a.startswith("-") and not ASSIGNMENT.match(a)]
        missing = [t for t in wanted if t not in targets]
        return f"no target {', '.join(missing)} in the Makefile" if missing else None
    if program in (".venv/bin/python", "python3"):
        return check_python(program, args)
    if program.startswith(".venv/bin/"):
        tool = program.removeprefix(".venv/bin/")
        if not (VENV_BIN / tool).exists():
            return f"the virtualenv has no {tool}"
        if tool == "ansible-playbook":
            return check_playbook(args, syntax_check)
        return check_inventory(args)
    if program.startswith(CACHE_BIN_PREFIX):
        tool = program.removeprefix(CACHE_BIN_PREFIX)
        return None if tool in CACHE_TOOLS else f"`make setup` puts no {tool} in the cache's bin"
    if program in NOT_BARE or program.startswith("python"):
        return f"{program} is not on a clean Debian 12's PATH: use a make target or .venv/bin/{program}"
    if program in ALLOWED:
        return None
    return f"unknown program {program!r}: use a make target, .venv/bin/..., or add it to ALLOWED with a reason"


def check_python(program: str, args: list[str]) -> str | None:
    if args[:1] != ["-m"] or len(args) < 2:
        return f"{program} without -m MODULE: run a module of the project"
    module, rest = args[1], args[2:]
    if module == "lab":
        if not rest or rest[0] not in COMMANDS:
            return f"`python -m lab {rest[0] if rest else ''}` is no command of lab/cli.py ({', '.join(COMMANDS)})"
        return None
    if program == "python3":
        return "python3 (no virtualenv) only runs `-m lab setup`: use .venv/bin/python"
    return None if importlib.util.find_spec(module) else f"no module {module} in the virtualenv"


def option_values(args: list[str], names: set[str]) -> tuple[list[str], list[str]]:
    """(values of the options named, the positional arguments)."""
    values, positional = [], []
    iterator = iter(args)
    for arg in iterator:
        if arg in names:
            values.append(next(iterator, ""))
        elif arg.startswith("--") and "=" in arg and arg.split("=", 1)[0] in names:
            values.append(arg.split("=", 1)[1])
        elif arg in PLAYBOOK_OPTIONS_WITH_VALUE:
            next(iterator, None)
        elif not arg.startswith("-"):
            positional.append(arg)
    return values, positional


def check_inventory(args: list[str]) -> str | None:
    inventories, _ = option_values(args, {"-i", "--inventory"})
    for inventory in inventories:
        if inventory != GENERATED_INVENTORY and not (REPO / inventory).exists():
            return f"no inventory {inventory}"
    return None


def check_playbook(args: list[str], syntax_check: SyntaxCheck) -> str | None:
    problem = check_inventory(args)
    if problem:
        return problem
    inventories, playbooks = option_values(args, {"-i", "--inventory"})
    if not playbooks:
        return "ansible-playbook without a playbook"
    for playbook in playbooks:
        if not (REPO / playbook).is_file():
            return f"no playbook {playbook}"
        failure = syntax_check(playbook, inventories[-1] if inventories else None)
        if failure:
            return f"--syntax-check of {playbook} failed: {failure}"
    return None


STAND_IN_INVENTORY = """\
all:
  children:
    master:
      hosts:
        lab-master:
    workers:
      hosts:
        lab-worker-1:
"""


@functools.cache
def ansible_syntax_check(playbook: str, inventory: str | None) -> str | None:
    """ansible-playbook --syntax-check, with the inventory named unless it is generated or AWS's."""
    with tempfile.TemporaryDirectory() as scratch:
        if inventory in (None, GENERATED_INVENTORY, AWS_INVENTORY) and not (
            inventory == GENERATED_INVENTORY and (REPO / inventory).is_file()
        ):
            stand_in = Path(scratch) / "hosts.yml"
            stand_in.write_text(STAND_IN_INVENTORY)
            inventory = str(stand_in)
        result = subprocess.run(
            [str(VENV_BIN / "ansible-playbook"), "-i", inventory, "--syntax-check", playbook],
            cwd=REPO,
            env=dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg")),
            capture_output=True,
            text=True,
            check=False,
        )
    return None if result.returncode == 0 else (result.stdout + result.stderr).strip()[-2000:]


# --------------------------------------------------------------------------- links


def slug(heading: str) -> str:
    """GitHub's anchor of a heading."""
    text = re.sub(r"[`*]|\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(markdown: str) -> set[str]:
    found: set[str] = set()
    counts: dict[str, int] = {}
    in_code = False
    for line in markdown.splitlines():
        if line.lstrip().startswith("```"):
            in_code = not in_code
        heading = re.match(r"^#{1,6}\s+(.*?)\s*#*$", line)
        if heading and not in_code:
            base = slug(heading.group(1))
            found.add(base if base not in counts else f"{base}-{counts[base]}")
            counts[base] = counts.get(base, 0) + 1
    return found


def broken_links(page: Path) -> list[str]:
    markdown = page.read_text()
    prose = re.sub(r"```.*?```", "", markdown, flags=re.DOTALL)
    problems = []
    for target in re.findall(r"\]\(([^)\s]+)\)", prose):
        if re.match(r"^[a-z]+:", target):
            continue  # https:, mailto:
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        where = f"{page.relative_to(REPO)}: ({target})"
        if not linked.exists():
            problems.append(f"{where}: no {path}")
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked.read_text()):
            problems.append(f"{where}: no heading #{anchor} in {linked.relative_to(REPO)}")
    return problems


# --------------------------------------------------------------------------- the tests

DOCUMENTED = [c for page in PAGES for c in extract_commands(page.read_text(), str(page.relative_to(REPO)))]
MAKEFILE = (REPO / "Makefile").read_text()


def test_the_readme_is_a_front_door():
    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) <= 150
    commands = {c.text.split("#")[0].strip() for c in DOCUMENTED if c.where.startswith("README.md:")}
    assert {"make demo", "make test"} <= commands


def test_every_page_of_docs_is_linked_from_the_readme():
    readme = (REPO / "README.md").read_text()
    assert [p.name for p in PAGES if p.parent.name == "docs" and f"docs/{p.name}" not in readme] == []


@pytest.mark.parametrize("command", DOCUMENTED, ids=[c.where for c in DOCUMENTED])
def test_documented_command_resolves(command: Command):
    assert check_command(command, MAKEFILE, ansible_syntax_check) == []


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(REPO)) for p in PAGES])
def test_links_resolve(page: Path):
    assert broken_links(page) == []


# The checker itself: it must fail where a user would.

SAMPLE = """\
Some prose, then commands:

```sh
make lab-status        # state of every node
make lab-reboot NODE=lab-worker-1
LAB_REUSE=1 make test PYTEST_ARGS="-m node"
```

```console
$ make lab-up NODES=2
booting ...
$ .venv/bin/python -m lab ssh lab-master \\
    kubectl get nodes
```

```text
make no-such-target   # output, not read
```
"""


def test_extraction_joins_lines_drops_prompts_comments_and_output():
    commands = extract_commands(SAMPLE, "sample.md")
    assert [(c.where, c.text) for c in commands] == [
        ("sample.md:4", "make lab-status"),
        ("sample.md:5", "make lab-reboot NODE=lab-worker-1"),
        ("sample.md:6", 'LAB_REUSE=1 make test PYTEST_ARGS="-m node"'),
        ("sample.md:10", "make lab-up NODES=2"),
        ("sample.md:12", ".venv/bin/python -m lab ssh lab-master kubectl get nodes"),
    ]


def test_here_documents_quotes_and_operators():
    sample = (
        "```sh\n"
        "mkdir -p x && cat > x/all.yml <<EOF\n"
        "key: $(curl -s https://example.org)/32   # not a command\n"
        "EOF\n"
        "make conformance FOCUS='\\[a\\]|\\[b\\] # c'   # a comment\n"
        "```\n"
    )
    commands = extract_commands(sample, "s.md")
    assert [c.text for c in commands] == [
        "mkdir -p x && cat > x/all.yml <<EOF",
        "make conformance FOCUS='\\[a\\]|\\[b\\] # c'",
    ]
    assert segments(commands[0].text) == [["mkdir", "-p", "x"], ["cat"]]
    assert segments(commands[1].text) == [["make", "conformance", "FOCUS=\\[a\\]|\\[b\\] # c"]]


def test_the_check_fails_when_a_documented_target_is_removed():
    commands = extract_commands(SAMPLE, "sample.md")
    never: SyntaxCheck = lambda playbook, inventory: None  # noqa: E731
    assert [p for c in commands for p in check_command(c, MAKEFILE, never)] == []
    without = re.sub(r"(?m)^lab-status:.*\n(\t.*\n)*", "", MAKEFILE)
    assert "lab-status" in makefile_targets(MAKEFILE) and "lab-status" not in makefile_targets(without)
    problems = [p for c in commands for p in check_command(c, without, never)]
    assert problems == ["sample.md:4: `make lab-status`: no target lab-status in the Makefile"]


def test_the_check_names_commands_that_fail_from_a_clean_clone():
    sample = (
        "```bash\n"
        "ansible-playbook site.yml\n"
        "python -m lab up\n"
        ".venv/bin/python -m lab no-such-command\n"
        ".venv/bin/ansible-playbook -i inventory/lab/hosts.yml playbooks/no-such.yml\n"
        ".venv/bin/ansible-playbook deploy.yml -e app_message=hola\n"
        "helm list\n"
        "kubectl get pods\n"
        "```\n"
    )
    checked: list[tuple[str, str | None]] = []

    def failing_syntax_check(playbook: str, inventory: str | None) -> str | None:
        checked.append((playbook, inventory))
        return "ERROR! a syntax error"

    problems = [p for c in extract_commands(sample, "s.md") for p in check_command(c, MAKEFILE, failing_syntax_check)]
    assert [p.split(":")[1] for p in problems] == ["2", "3", "4", "5", "6", "7", "8"]
    assert "ansible-playbook is not on a clean Debian 12's PATH" in problems[0]
    assert "python is not on a clean Debian 12's PATH" in problems[1]
    assert "is no command of lab/cli.py" in problems[2]
    assert "no playbook playbooks/no-such.yml" in problems[3]
    assert "--syntax-check of deploy.yml failed: ERROR! a syntax error" in problems[4]
    assert checked == [("deploy.yml", None)]
    assert "helm is not on a clean Debian 12's PATH" in problems[5]
    assert "unknown program 'kubectl'" in problems[6]


def test_a_real_syntax_check_passes_and_fails(tmp_path: Path):
    assert ansible_syntax_check("deploy.yml", GENERATED_INVENTORY) is None
    broken = tmp_path / "broken.yml"
    broken.write_text("- hosts: all\n  tasks:\n    - no.such.module_x: {}\n")
    assert "no.such.module_x" in (ansible_syntax_check(str(broken), None) or "")


def test_broken_links_are_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(sys.modules[__name__], "REPO", tmp_path)
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("# A page\n\n## Run `it` now\n\n[x](#run-it-now) [y](b.md#nope)\n")
    (tmp_path / "docs" / "b.md").write_text("# B\n\n[back](a.md#a-page) [gone](c.md)\n")
    assert broken_links(tmp_path / "docs" / "a.md") == ["docs/a.md: (b.md#nope): no heading #nope in docs/b.md"]
    assert broken_links(tmp_path / "docs" / "b.md") == ["docs/b.md: (c.md): no c.md"]
