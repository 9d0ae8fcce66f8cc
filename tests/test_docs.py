"""The commands and code blocks of README.md and docs/*.md, read from the markdown.

A fenced block may follow a marker comment: ``<!-- not run: why -->`` (too long or needs what this
machine lacks: its commands only parse), ``<!-- file: NAME -->`` (a Python block saved as NAME for
the commands after it), ``<!-- module: PATH -->`` (a Python block that is the module PATH of
sta_d2) or ``<!-- output of: COMMAND -->`` (what ``make demo``, ``make demo-dense`` or "the command
above" prints). Every command, in a block or inline in the prose, names an existing tool, module,
script or make target, with flags its argument parser accepts and config files that load. Every
other bash block runs as written (after the demos have made their data and runs where the docs say
they live: ``dev/demo.sh`` and ``dev/demo_dense.sh`` on fewer images, with a few training steps),
and printed output the docs quote has the form the command prints. Figures quoted in two places
agree.
"""
import argparse
import ast
import os
import re
import runpy
import shlex
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Tuple
from unittest import mock

import pytest

from sta_d2 import load_config

REPO = Path(__file__).parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
MARKERS = ("not run", "file", "module", "output of")
# the demos in the workspace: 64 training and 8 validation images (every evaluation of the docs'
# commands runs on them), two Mask R-CNN steps; ten SegNet steps without warm-up, for a
# segmentation baseline whose mIoU (Δm divides by it) is not 0
DEMO_DATA = {"DEMO_NUM_TRAIN": "64", "DEMO_NUM_VAL": "8"}
QUICK = {"make demo": ["SOLVER.MAX_ITER", "2", "SOLVER.IMS_PER_BATCH", "2", "SOLVER.STEPS", "()"],
         "make demo-dense": ["SOLVER.MAX_ITER", "10", "SOLVER.WARMUP_ITERS", "0", "SOLVER.STEPS", "()"]}


@dataclass
class Block:
    path: Path
    line: int
    lang: str
    text: str
    marker: Optional[Tuple[str, str]]

    @property
    def name(self):
        return f"{self.path.relative_to(REPO)}:{self.line}"


def read_blocks(path):
    """The fenced blocks of a markdown file, each with the marker comment right above it."""
    blocks, lines, i = [], path.read_text().splitlines(), 0
    while i < len(lines):
        fence = re.match(r"```(\w*)\s*$", lines[i])
        if not fence:
            i += 1
            continue
        end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
        above = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), "")
        comment = re.fullmatch(r"<!-- ([a-z ]+): (.+) -->", above.strip())
        marker = (comment.group(1), comment.group(2)) if comment else None
        blocks.append(Block(path, i + 1, fence.group(1), "\n".join(lines[i + 1:end]) + "\n", marker))
        i = end + 1
    return blocks


BLOCKS = [block for path in DOCS for block in read_blocks(path)]
RUNNABLE = [b for b in BLOCKS if b.lang == "bash" and b.marker is None]


def commands(text):
    """The commands of a shell block: continuation lines joined, comments dropped, as argv lists."""
    return [argv for line in text.replace("\\\n", " ").splitlines() if (argv := shlex.split(line, comments=True))]


def inline_commands(path):
    """Commands quoted inline in the prose (in backticks, outside fenced blocks), but for those
    with placeholders (``N``, ``[--seeds S]``, ``<layout>``, ``...``)."""
    prose = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)
    spans = re.findall(r"`((?:python|make|bash|pip) [^`]+)`", prose)
    return [shlex.split(span) for span in spans if not re.search(r"\[|<|\.\.\.|\b[A-Z]\b", span)]


class Parsed(Exception):
    pass


def parsed_arguments(argv, run):
    """The namespace a tool's argument parser makes of ``argv`` (run stops right after parsing)."""
    original = argparse.ArgumentParser.parse_args

    def parse(self, args=None, namespace=None):
        raise Parsed(original(self, args, namespace))

    with mock.patch.object(argparse.ArgumentParser, "parse_args", parse), mock.patch.object(sys, "argv", argv):
        try:
            run()
        except Parsed as done:
            return done.args[0]
        except SystemExit as e:
            raise AssertionError(f"the parser of {argv[0]} rejects {argv[1:]} (exit {e.code})")
    raise AssertionError(f"{argv[0]} parsed no command line")


def check_command(argv, block=None):
    """The program of ``argv`` exists and accepts its arguments; its config file loads."""
    while argv and re.fullmatch(r"[A-Z_0-9]+=\S*", argv[0]):
        argv = argv[1:]
    program, args = argv[0], argv[1:]
    if program == "make":
        targets = re.findall(r"^([\w-]+):", (REPO / "Makefile").read_text(), flags=re.M)
        for target in (a for a in args if "=" not in a):
            assert target in targets, f"make {target}: no such target in the Makefile"
    elif program == "pip":
        assert args == ["install", "-e", "."] and (REPO / "setup.py").exists()
    elif program == "bash":
        assert (REPO / args[0]).is_file(), f"bash {args[0]}: no such script"
    elif program == "python" and args[0] == "-m":
        parsed_arguments([args[1], *args[2:]], lambda: runpy.run_module(args[1], run_name="__main__"))
    elif program == "python" and args[0].startswith("tools/"):
        assert (REPO / args[0]).is_file(), f"{args[0]}: no such tool"
        namespace = parsed_arguments(args, lambda: runpy.run_path(str(REPO / args[0]), run_name="__main__"))
        config = getattr(namespace, "config_file", None)
        if config:
            assert (REPO / config).is_file(), f"{config}: no such config file"
            load_config(str(REPO / config), namespace.opts or [])
    elif program == "python":
        files = [b.marker[1] for b in BLOCKS if block and b.path == block.path and b.marker == ("file", args[0])]
        assert files, f"python {args[0]}: no block of {block.path.name} is marked as that file"
    else:
        raise AssertionError(f"{' '.join(argv)}: not a command these tests know how to check")


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.lang == "bash"], ids=lambda b: b.name)
def test_commands_name_existing_tools_flags_and_configs(block, monkeypatch):
    monkeypatch.chdir(REPO)
    for argv in commands(block.text):
        check_command(argv, block)


@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_inline_commands_name_existing_tools_and_flags(path, monkeypatch):
    monkeypatch.chdir(REPO)
    for argv in inline_commands(path):
        check_command(argv)


def test_every_block_is_run_or_says_why_not():
    problems = []
    for block in BLOCKS:
        if block.marker and block.marker[0] not in MARKERS:
            problems.append(f"{block.name}: unknown marker {block.marker}")
        if block.lang == "python":
            if not (block.marker and block.marker[0] in ("file", "module", "not run")):
                problems.append(f"{block.name}: a Python block needs <!-- file: NAME -->, <!-- module: PATH --> "
                                "or <!-- not run: why -->")
            compile(block.text, block.name, "exec")
        if block.marker and block.marker[0] == "output of" and block.lang:
            problems.append(f"{block.name}: printed output goes in a plain block")
    assert not problems, "\n".join(problems)
    assert RUNNABLE, "no block of the docs runs"


def without_docstrings(source):
    tree = ast.parse(source)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) \
                and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
            node.body = body[1:]
    return ast.dump(tree)


def test_a_module_quoted_in_full_is_the_module():
    quoted = [b for b in BLOCKS if b.marker and b.marker[0] == "module" and (REPO / b.marker[1]).exists()]
    assert quoted
    for block in quoted:
        assert without_docstrings(block.text) == without_docstrings((REPO / block.marker[1]).read_text()), \
            f"{block.name} differs from {block.marker[1]}"


@pytest.mark.slow  # trains a few steps in a subprocess
def test_an_example_module_trains(tmp_path):
    examples = [b for b in BLOCKS if b.marker and b.marker[0] == "module" and not (REPO / b.marker[1]).exists()]
    assert [b.marker[1] for b in examples] == ["sta_d2/allocation/round_robin.py"]
    (tmp_path / "round_robin.py").write_text(examples[0].text)
    script = textwrap.dedent(f"""
        import importlib.util, sys
        import sta_d2.allocation
        path = {str(tmp_path / "round_robin.py")!r}
        spec = importlib.util.spec_from_file_location("sta_d2.allocation.round_robin", path)
        sys.modules[spec.name] = module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)

        import torch
        from conftest import dense_cfg, short_run
        from sta_d2 import STATrainer, validate_sta_config
        from sta_d2.allocation import build_allocation_policy
        from sta_d2.data.datasets import register_nyuv2_13
        from sta_d2.data.synthetic import generate_nyuv2_13

        generate_nyuv2_13({str(tmp_path / "nyuv2")!r}, num_train=4, num_val=0, image_size=(32, 48))
        register_nyuv2_13("round_robin_train", {str(tmp_path / "nyuv2" / "train")!r})
        cfg = short_run(dense_cfg("segnet", ("sem_seg", "depth")), {str(tmp_path / "out")!r}, "round_robin", 4)
        cfg.DATASETS.TRAIN, cfg.MODEL.DENSE.NUM_CLASSES = ("round_robin_train",), 13
        cfg.STA.ROUND_ROBIN.PERIOD = 2
        validate_sta_config(cfg)
        STATrainer(cfg).train()
        policy = build_allocation_policy(cfg, ["sem_seg", "depth"], 0)
        steps = [policy.next_step(lambda: [{{}}, {{}}])[1] for _ in range(4)]
        assert [s.mask[:, 1].tolist() for s in steps] == [[False] * 2] * 2 + [[True] * 2] * 2, steps
        print("round robin trained")
    """)
    env = {**os.environ, "PYTHONPATH": str(REPO / "tests")}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600)
    assert "round robin trained" in result.stdout, result.stderr[-3000:]


def numbers_as(text, mark="#"):
    """``text`` with each number replaced by ``mark`` and runs of spaces by one."""
    return re.sub(r" +", " ", re.sub(r"[-+]?(\d+(\.\d+)?|nan|inf)", mark, text)).strip()


def quoted_output(command):
    [block] = [b for b in BLOCKS if b.marker == ("output of", command)]
    return block


def table_values(text):
    """{column: {row name: value}} of a markdown table."""
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in text.splitlines() if line.startswith("|")]
    header, body = rows[0], [r for r in rows[2:]]
    return {column: {r[0]: r[i] for r in body} for i, column in enumerate(header) if i}


def test_the_report_table_quotes_the_dense_demo():
    demo = quoted_output("make demo-dense").text
    values = {m.group(1): (float(m.group(2)), float(m.group(3)))
              for m in re.finditer(r"^(\S+/\S+)\s+([\d.]+)\s+([\d.]+)$", demo, flags=re.M)}
    delta_m = re.search(r"= ([-+][\d.]+) %", demo).group(1)
    [report] = [b for b in BLOCKS if b.marker == ("output of", "the command above") and b.path.name == "reports.md"]
    table = table_values(report.text)
    checked = 0
    for column, rows in table.items():
        metric = column.split(" ")[0]
        if metric in values:
            for row, value in zip(("single-task", "ISTA"), values[metric]):
                decimals = len(rows[row].split(".")[1])
                assert rows[row] == f"{value:.{decimals}f}", (column, row, rows[row], value)
                checked += 1
    assert checked == 8
    assert table["Δm (relative, %) ↑"]["ISTA"] == delta_m


def test_the_method_guide_quotes_the_benchmark():
    guide = table_values((REPO / "docs/choosing-a-method.md").read_text().split("## Weighting and gradient methods")[1])
    benchmark = (REPO / "docs/benchmark.md").read_text()
    [methods] = [t for t in re.split(r"\n\n", benchmark) if t.startswith("| method | s / step | to EqualWeighting |")
                 and "per-task gradients only" in t]
    measured = {name: value.strip("*") for name, value in table_values(methods)["to EqualWeighting"].items()}
    quoted = {name.strip("`"): value for name, value in guide["step time (dense)"].items()}
    assert quoted and all(value == f"{measured[name]}x" for name, value in quoted.items()), (quoted, measured)
    assert set(quoted) == set(measured) - {"per-task gradients only"}


def test_the_readme_excerpt_of_table_1_is_in_the_reproduction_page():
    rows = [line for line in (REPO / "README.md").read_text().splitlines() if line.startswith("| ")]
    page = (REPO / "docs/reproduction.md").read_text().splitlines()
    assert rows and all(row in page for row in rows)


def test_the_demo_facts_are_the_scripts():
    demo, dense = (REPO / "dev/demo.sh").read_text(), (REPO / "dev/demo_dense.sh").read_text()
    counts = r'--num-train "\$\{DEMO_NUM_TRAIN:-(\d+)\}" --num-val "\$\{DEMO_NUM_VAL:-(\d+)\}"'
    shapes, rooms = re.search(counts, demo).groups(), re.search(counts, dense).groups()
    readme, demos = (REPO / "README.md").read_text(), (REPO / "docs/demos.md").read_text()
    for text in (readme, demos):
        assert "{} training and {} validation images".format(*shapes) in re.sub(r"\s+", " ", text)
        assert "{} training and {} validation rooms".format(*rooms) in re.sub(r"\s+", " ", text)
    steps = load_config(str(REPO / "configs/Demo/shapes_mask_rcnn_ista.yaml")).SOLVER.MAX_ITER
    assert f"{steps} ISTA optimizer steps" in re.sub(r"\s+", " ", readme)
    assert f": {steps} optimizer steps," in quoted_output("make demo").text


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A folder where the docs' relative paths resolve (``tools``, ``configs``) and the demos have
    run as ``make demo`` and ``make demo-dense`` do, on fewer images (:data:`DEMO_DATA`) with a few
    training steps (:data:`QUICK`); what the demos printed, by command."""
    root = tmp_path_factory.mktemp("docs")
    for name in ("tools", "configs"):
        (root / name).symlink_to(REPO / name)
    env = {k: v for k, v in os.environ.items() if k != "DETECTRON2_DATASETS"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    printed = {}
    for command, script, out in (("make demo", "dev/demo.sh", "output/demo"),
                                 ("make demo-dense", "dev/demo_dense.sh", "output/demo_dense")):
        result = subprocess.run(["bash", str(REPO / script), str(root / out), *QUICK[command]], cwd=root,
                                env={**env, **DEMO_DATA}, capture_output=True, text=True, timeout=1800)
        assert result.returncode == 0, f"{script}: {result.stdout[-3000:]}{result.stderr[-3000:]}"
        printed[command] = result.stdout
    return root, env, printed


@pytest.mark.slow  # the demos, with a few training steps
@pytest.mark.parametrize("command", ["make demo", "make demo-dense"])
def test_the_demos_print_what_the_docs_quote(workspace, command):
    _, _, printed = workspace
    quoted = [numbers_as(line) for line in quoted_output(command).text.splitlines()]
    lines = [numbers_as(line) for line in printed[command].splitlines()]
    assert lines[-len(quoted):] == quoted
    assert len(printed[command].splitlines()) < 150  # the demo's progress, not detectron2's dumps


@pytest.mark.slow  # each block trains, evaluates or analyses on the demo data
@pytest.mark.parametrize("block", RUNNABLE, ids=lambda b: b.name)
def test_runnable_blocks_run_as_written(workspace, block):
    root, env, printed = workspace
    for file in (b for b in BLOCKS if b.path == block.path and b.marker and b.marker[0] == "file"):
        (root / file.marker[1]).write_text(file.text)
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", block.text], cwd=root, env=env,
                            capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, f"{block.name}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    after = [b for b in BLOCKS if b.path == block.path and b.line > block.line][:1]
    if after and after[0].marker == ("output of", "the command above"):
        lines = {numbers_as(line) for line in result.stdout.splitlines()}
        for line in after[0].text.splitlines():
            assert numbers_as(line) in lines, f"{after[0].name}: {line!r} is not what {block.name} prints"
