#!/usr/bin/env python3
"""The layer check: src/ and include/wharf/ are cut into layers, and a file may
include only headers of its own layer or of a lower one; and no two modules may
include each other, directly or through others (a cycle).

    base < net < oci < store < cache < ext < app

A module is a name within a layer: src/<layer>/<m>.c with its header
include/wharf/<layer>/<m>.h (docs/architecture.md shows what each owns).
Unit tests under tests/unit/<layer>/ are held to their layer as well, and so
are the fuzz targets (tests/fuzz) to the layer of what they test.

Usage: layers.py [SOURCE_ROOT]. Exits 1 listing every violation, else 0.
"""
import os
import re
import sys

LAYERS = ["base", "net", "oci", "store", "cache", "ext", "app"]
RANK = {name: i for i, name in enumerate(LAYERS)}

INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)
HEADER = re.compile(r"(?:^|/)wharf/(?:(\w+)/)?(\w+)\.h$")
SOURCE = re.compile(r"(?:^|/)src/(?:(\w+)/)?(\w+)\.c$")


def files(root):
    """(path, layer, module or None): every file the check covers."""
    for layer in LAYERS:
        for d, kind in ((f"src/{layer}", ".c"), (f"include/wharf/{layer}", ".h"),
                        (f"tests/unit/{layer}", ".c")):
            full = os.path.join(root, d)
            if not os.path.isdir(full):
                continue
            for name in sorted(os.listdir(full)):
                if name.endswith(kind):
                    module = None if d.startswith("tests") else name[:-len(kind)]
                    yield os.path.join(d, name), layer, module
    fuzz = os.path.join(root, "tests/fuzz")
    if os.path.isdir(fuzz):
        for name in sorted(os.listdir(fuzz)):
            if name.endswith((".c", ".h")):
                yield os.path.join("tests/fuzz", name), None, None


def stray(root):
    """Sources or headers outside any layer folder."""
    out = []
    for d, kind in (("src", ".c"), ("include/wharf", ".h")):
        full = os.path.join(root, d)
        for dirpath, _, names in os.walk(full):
            rel = os.path.relpath(dirpath, root)
            layer = os.path.relpath(dirpath, full).split(os.sep)[0]
            for name in names:
                if name.endswith(kind) and (layer not in RANK or rel.count(os.sep) !=
                                            d.count("/") + 1):
                    out.append(os.path.join(rel, name))
    return out


def target(inc):
    """(layer, module) an include names, or None when it is not one of ours."""
    m = HEADER.search(inc) or SOURCE.search(inc)
    if not m:
        return None
    return m.group(1), m.group(2)


def cycles(graph):
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def cycle_path(graph, comp):
    """One cycle through comp's first module, as the includes go."""
    start, members = comp[0], set(comp)
    prev, queue = {start: None}, [start]
    while queue:
        v = queue.pop(0)
        for w in sorted(graph.get(v, ())):
            if w == start:
                path = [v]
                while prev[path[-1]] is not None:
                    path.append(prev[path[-1]])
                return [start] + path[::-1][1:] + [start] if len(path) > 1 else [start, v, start]
            if w in members and w not in prev:
                prev[w] = v
                queue.append(w)
    return comp


def check(root):
    problems = [f"{p}: not in a layer folder ({', '.join(LAYERS)})" for p in stray(root)]
    graph = {}
    fuzz_layers = {}
    for path, layer, module in files(root):
        with open(os.path.join(root, path), encoding="utf-8") as f:
            text = f.read()
        for inc in INCLUDE.findall(text):
            t = target(inc)
            if t is None:
                continue
            tlayer, tmod = t
            if tlayer not in RANK:
                problems.append(f"{path}: includes {inc}, which is in no layer")
                continue
            if not os.path.exists(os.path.join(root, "include/wharf" if inc.endswith(".h")
                                               else "src", tlayer,
                                               tmod + (".h" if inc.endswith(".h") else ".c"))):
                problems.append(f"{path}: includes {inc}, which does not exist")
                continue
            if layer is None:  # a fuzz target: any layer, recorded for the summary
                fuzz_layers.setdefault(path, set()).add(tlayer)
                continue
            if RANK[tlayer] > RANK[layer]:
                problems.append(f"{path}: includes {inc}: {layer} may not include {tlayer} "
                                f"(a higher layer)")
            if module is not None and (tlayer, tmod) != (layer, module):
                graph.setdefault(f"{layer}/{module}", set()).add(f"{tlayer}/{tmod}")
    for comp in cycles(graph):
        problems.append("include cycle between modules: " + " -> ".join(cycle_path(graph, comp)))
    return problems, graph


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..")
    problems, graph = check(os.path.abspath(root))
    for p in problems:
        print(p)
    if problems:
        print(f"layers: {len(problems)} problem(s)")
        return 1
    print(f"layers: {len(graph)} modules, {sum(len(v) for v in graph.values())} includes "
          f"between them, no upward include, no cycle")
    return 0


if __name__ == "__main__":
    sys.exit(main())
