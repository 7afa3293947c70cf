#!/usr/bin/env python3
"""Self instructions per function of a callgrind dump of a Node process, with the JIT code named
from the process's perf map (node --perf-basic-prof): python3 bench/callgrind-jit.py DUMP MAP
[REQUESTS] [--diff DUMP2 MAP2]. Prints instructions per request, largest first (with --diff:
the second dump's minus the first's)."""
import bisect, collections, re, subprocess, sys

def perf_map(path):
    rows = []
    for line in open(path, errors='replace'):
        parts = line.rstrip('\n').split(' ', 2)
        if len(parts) == 3:
            rows.append((int(parts[0], 16), int(parts[1], 16), parts[2]))
    rows.sort()
    return rows

def load(dump, mapfile):
    rows = perf_map(mapfile)
    starts = [r[0] for r in rows]
    out = subprocess.run(['callgrind_annotate', '--threshold=100', dump], capture_output=True, text=True).stdout
    d = collections.Counter()
    total = 0
    for line in out.splitlines():
        m = re.match(r'\s*([\d,]+) \(\s*[\d.]+%\)\s+(.*)$', line)
        if not m:
            continue
        n = int(m.group(1).replace(',', ''))
        name = m.group(2)
        if 'PROGRAM TOTALS' in name:
            total = n
            continue
        name = re.sub(r'\s*\[.*?\]$', '', name).strip()
        name = re.sub(r"^\?\?\?:", '', name)
        a = re.match(r"^0x([0-9a-f]+)", name)
        if a:
            addr = int(a.group(1), 16)
            i = bisect.bisect_right(starts, addr) - 1
            # The last code object at that address (code is reused after collection): the map's
            # latest line wins, which is what ran late in the process.
            name = 'JIT ?' if i < 0 or addr >= rows[i][0] + rows[i][1] else 'JIT ' + rows[i][2]
        d[name[:150]] += n
    return d, total

args = sys.argv[1:]
requests = 1500
diff = None
if '--diff' in args:
    i = args.index('--diff')
    diff = args[i + 1:i + 3]
    args = args[:i]
if len(args) > 2:
    requests = float(args[2])
a, ta = load(args[0], args[1])
if diff is None:
    print('total per request %.0f' % (ta / requests))
    for k, v in a.most_common(60):
        print('%9.0f  %s' % (v / requests, k))
else:
    b, tb = load(diff[0], diff[1])
    print('total per request %.0f -> %.0f (%+.0f)' % (ta / requests, tb / requests, (tb - ta) / requests))
    keys = sorted(set(a) | set(b), key=lambda k: -(b[k] - a[k]))
    for k in keys[:60]:
        print('%9.0f %9.0f %+9.0f  %s' % (a[k] / requests, b[k] / requests, (b[k] - a[k]) / requests, k))
