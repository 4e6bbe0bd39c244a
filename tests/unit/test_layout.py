"""The code's shape (issue 12, docs/architecture.md): imports flow one way, scripts -> engine ->
networks, datasets and the method modules -> core, with no cycle anywhere; every file says what
it owns; files stay short."""
import ast
import os
import subprocess

import pytest

from conftest import REPO

METHOD_MODULES = {"utils", "metrics", "scorers"}
PACKAGES = {"core", "networks", "datasets", "engine"}
MAX_LINES = {"script": 150, "module": 250}


def source_files():
    listed = subprocess.run(["git", "-C", REPO, "ls-files", "--cached", "--others", "--exclude-standard", "*.py"],
                            capture_output=True, text=True, check=True).stdout.split()
    return [p for p in listed if not p.startswith("tests/") and os.path.isfile(os.path.join(REPO, p))]


def layer(path):
    """'core', 'networks', 'datasets', 'method', 'engine' or 'script' for a file of the repo."""
    top = path.split("/")[0]
    if top in PACKAGES:
        return top
    if "/" not in path and path[:-3] in METHOD_MODULES:
        return "method"
    return "script"  # top-level scripts, benchmarks/, scripts/


def imported_layers(path):
    """(line, module, layer) of every project module `path` imports, at any depth of the file."""
    tree = ast.parse(open(os.path.join(REPO, path)).read())
    top_scripts = {p[:-3] for p in os.listdir(REPO) if p.endswith(".py")} - METHOD_MODULES
    found = []
    for node in ast.walk(tree):
        names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                 [node.module] if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 else [])
        for name in names:
            head = name.split(".")[0]
            if head in PACKAGES:
                found.append((node.lineno, name, head))
            elif head in METHOD_MODULES:
                found.append((node.lineno, name, "method"))
            elif head in top_scripts or head in ("benchmarks", "scripts"):
                found.append((node.lineno, name, "script"))
    return found


# which layers each layer may import (its own included)
ALLOWED = {"core": {"core"},
           "networks": {"networks", "core"},
           "datasets": {"datasets", "networks", "core"},
           "method": {"method", "core"},
           "engine": {"engine", "networks", "datasets", "method", "core"},
           "script": {"script", "engine", "networks", "datasets", "method", "core"}}


def test_the_layer_rules_see_a_wrong_import():
    # the checker itself: engine/training.py imports networks (allowed) and core (allowed)
    layers = {found[2] for found in imported_layers("engine/training.py")}
    assert {"networks", "core"} <= layers and layer("engine/training.py") == "engine"
    assert layer("train_cacOpenset.py") == "script" and layer("utils.py") == "method"
    assert "engine" not in ALLOWED["datasets"] and ALLOWED["core"] == {"core"}


def test_imports_flow_one_way():
    wrong = [f"{path}:{line} imports {name} ({kind})" for path in source_files()
             for line, name, kind in imported_layers(path) if kind not in ALLOWED[layer(path)]]
    assert not wrong, "\n".join(wrong)


def test_every_file_opens_with_a_docstring():
    missing = [p for p in source_files() if ast.get_docstring(ast.parse(open(os.path.join(REPO, p)).read())) is None
               and os.path.getsize(os.path.join(REPO, p)) > 0]
    assert not missing, missing


def is_script(path):
    """Run as a command: a file of the script layer with a `__main__` block (benchmarks/ and
    scripts/ also hold modules those scripts share)."""
    return layer(path) == "script" and "__main__" in open(os.path.join(REPO, path)).read()


@pytest.mark.parametrize("kind", sorted(MAX_LINES))
def test_files_stay_short(kind):
    long = []
    for p in source_files():
        if is_script(p) == (kind == "script"):
            n = sum(1 for _ in open(os.path.join(REPO, p)))
            if n > MAX_LINES[kind]:
                long.append(f"{p}: {n} lines")
    assert not long, f"over {MAX_LINES[kind]} lines: {long}"


def module_name(path):
    name = path[:-3].replace("/", ".")
    return name[:-len(".__init__")] if name.endswith(".__init__") else name


def import_graph():
    """module -> the project modules it imports (`from a import b` counts a.b when b is a module)."""
    modules = {module_name(p): p for p in source_files()}
    graph = {}
    for name, path in modules.items():
        targets = set()
        for node in ast.walk(ast.parse(open(os.path.join(REPO, path)).read())):
            if isinstance(node, ast.Import):
                targets.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets.add(node.module)
                targets.update(f"{node.module}.{a.name}" for a in node.names)
        graph[name] = sorted(t for t in targets if t in modules and t != name)
    return graph


def find_cycle(graph):
    """One import cycle as a list of modules (first == last), or None."""
    done, path = set(), []

    def visit(module):
        path.append(module)
        for target in graph.get(module, ()):
            if target in path:
                return path[path.index(target):] + [target]
            if target not in done:
                cycle = visit(target)
                if cycle:
                    return cycle
        done.add(path.pop())
        return None

    for module in sorted(graph):
        if module not in done:
            cycle = visit(module)
            if cycle:
                return cycle
    return None


def test_the_cycle_finder_sees_a_cycle():
    assert find_cycle({"a": ["b"], "b": ["c"], "c": ["a"], "d": ["a"]}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": ["b", "c"], "b": ["c"], "c": []}) is None
    assert "benchmarks.cells" in import_graph()["benchmarks.launch"]


def test_no_import_cycles():
    # imports inside functions count too: a cycle there is still two modules that need each other
    cycle = find_cycle(import_graph())
    assert cycle is None, " -> ".join(cycle)
