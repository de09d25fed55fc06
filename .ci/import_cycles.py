#!/usr/bin/env python3
"""Import cycles among the modules (files) of host/src.

A module depends on another when it names it: `use crate::a::b`,
`crate::a::b::X` in code, `super::x`. A parent's `mod x;` is not a use.
Test modules are left out. Prints every cycle (strongly connected set of
more than one module) with its edges; exits 1 if there is one, or with
--through PREFIX only if a cycle runs through a module under PREFIX
(`make lint` runs `--through engine`: the engine is a layer below the hub,
the loops, guests/ and http/, and imports none of them).

No crate does this for a Rust source tree without compiling it (cargo
modules needs nightly's rustc internals); a regex over `crate::` paths is
enough for a tree that names modules that way, which this one does.
"""
import os, re, sys
args = sys.argv[1:]
through = None
if '--through' in args:
    i = args.index('--through')
    through = args[i + 1]
    del args[i:i + 2]
root = args[0] if args else 'host/src'
files = {}
for d, _, fs in os.walk(root):
    for f in fs:
        if f.endswith('.rs'):
            p = os.path.join(d, f)
            rel = os.path.relpath(p, root)[:-3]
            mod = rel.replace('/mod', '').replace('/', '::')
            if mod in ('lib', 'main'): mod = 'crate'
            files[mod] = p
def resolve(path):
    parts = path.split('::')
    while parts:
        m = '::'.join(parts)
        if m in files: return m
        parts.pop()
    return None
graph = {m: set() for m in files}
for m, p in files.items():
    src = open(p).read()
    src = re.sub(r'#\[cfg\(test\)\]\s*mod tests \{.*', '', src, flags=re.S)
    src = re.sub(r'//.*', '', src)
    # use crate::a::{b, c::d}
    for um in re.finditer(r'use crate::([\w:]+)(?:::\{([^;]*)\})?', src):
        base = um.group(1).rstrip(':')
        if um.group(2):
            for item in re.split(r'[,\s]+', um.group(2)):
                item = item.strip('{} ')
                if not item: continue
                t = resolve(base + '::' + item.split('::')[0]) or resolve(base)
                if t and t != m: graph[m].add(t)
        else:
            t = resolve(base)
            if t and t != m: graph[m].add(t)
    for um in re.finditer(r'crate::([\w]+(?:::[\w]+)*)', src):
        t = resolve(um.group(1))
        if t and t != m: graph[m].add(t)
    # super:: references
    parent = m.rsplit('::', 1)[0] if '::' in m else 'crate'
    for um in re.finditer(r'super::([\w]+(?:::[\w]+)*)', src):
        t = resolve((parent + '::' if parent != 'crate' else '') + um.group(1))
        if t and t != m: graph[m].add(t)
# Tarjan
index = {}; low = {}; stack = []; on = set(); sccs = []; i = [0]
sys.setrecursionlimit(10000)
def strong(v):
    index[v] = low[v] = i[0]; i[0] += 1; stack.append(v); on.add(v)
    for w in graph[v]:
        if w not in index:
            strong(w); low[v] = min(low[v], low[w])
        elif w in on: low[v] = min(low[v], index[w])
    if low[v] == index[v]:
        comp = []
        while True:
            w = stack.pop(); on.discard(w); comp.append(w)
            if w == v: break
        if len(comp) > 1: sccs.append(sorted(comp))
for v in graph:
    if v not in index: strong(v)
failing = False
for c in sccs:
    print(f'cycle of {len(c)}: ' + ', '.join(c))
    for a in c:
        for b in sorted(graph[a]):
            if b in c: print(f'   {a} -> {b}')
    if through is None or any(m == through or m.startswith(through + '::') for m in c):
        failing = True
if through is not None:
    print(f'cycles through {through}: ' + ('some (above)' if failing else 'none'))
sys.exit(1 if failing else 0)
