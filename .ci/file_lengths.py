#!/usr/bin/env python3
"""No Rust source file over a limit of lines (500 by default): a file that
long holds more than one concept, and a reader looking for one has to read
the others. Prints each file over it, longest first; exits 1 if any.

Usage: file_lengths.py [--max N] DIR...

A few lines of Python rather than a crate or a clippy lint: clippy has a
lint for long functions, none for long files, and tokei/scc count lines but
do not fail on a limit.
"""
import os, sys
args = sys.argv[1:]
limit = 500
if '--max' in args:
    i = args.index('--max')
    limit = int(args[i + 1])
    del args[i:i + 2]
over = []
longest = (0, None)
for root in args or ['host/src']:
    for d, dirs, fs in os.walk(root):
        dirs[:] = [x for x in dirs if x not in ('target', 'node_modules') and not x.startswith('.')]
        for f in fs:
            if f.endswith('.rs'):
                p = os.path.join(d, f)
                n = sum(1 for _ in open(p, encoding='utf-8'))
                longest = max(longest, (n, p))
                if n > limit:
                    over.append((n, p))
for n, p in sorted(over, reverse=True):
    print(f'{p}: {n} lines, over {limit}')
if longest[1]:
    print(f'longest: {longest[1]} ({longest[0]} lines)')
sys.exit(1 if over else 0)
