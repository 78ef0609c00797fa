#!/usr/bin/env python3
"""Renders bench/run's raw results (key<TAB>target<TAB>value lines) as one markdown table.

usage: report.py RESULTS.tsv OUT.md [note lines...]

Repeated runs of a workload are summarised by their median. Ratios are kube-oidc-proxy over the
pass-through and over the upstream reached directly; the last column checks the targets of the README's "Performance" section.
"""

import statistics
import sys
from collections import defaultdict

res_path, out_path, *notes = sys.argv[1:]
vals = defaultdict(list)
for line in open(res_path):
    parts = line.rstrip("\n").split("\t")
    if len(parts) != 3:
        continue
    key, target, value = parts
    try:
        vals[(key, target)].append(float(value))
    except ValueError:
        pass


def get(key, target):
    v = vals.get((key, target))
    return statistics.median(v) if v else None


def spread(key, target):
    v = vals.get((key, target))
    if not v or len(v) < 2:
        return ""
    return f" ({min(v):{FMT.get(key, '.3g')}}–{max(v):{FMT.get(key, '.3g')}})"


FMT = {"tokcached.cpu_us": ".1f"}


def fmt(v, f):
    if v is None:
        return "–"
    return format(v, f)


TARGETS = ["direct", "passthrough", "kop"]
CONC_LABEL = "64 connections"
rate = get("meta", "rate")

# (key, workload label, metric label, number format, show spread)
ROWS = [
    ("get.rps", "small GET, HTTP/1.1, 64 conns", "requests/s", ",.0f", True),
    ("get.p50", "", "latency p50 (ms)", ".3f", False),
    ("get.p99", "", "latency p99 (ms)", ".3f", False),
    ("get.cpu10k", "", "CPU s / 10k req (serving process)", ".3f", True),
    ("get.cpu10k_total", "", "CPU s / 10k req (incl. upstream)", ".3f", False),
    ("get.reqpercpu", "", "requests per CPU-second (serving process)", ",.0f", False),
    ("get.ctxsw", "", "context switches / request (serving process)", ".2f", False),
    ("geth2.rps", "small GET, HTTP/2, 4 conns x 16 streams", "requests/s", ",.0f", True),
    ("geth2.p50", "", "latency p50 (ms)", ".3f", False),
    ("geth2.p99", "", "latency p99 (ms)", ".3f", False),
    ("geth2.cpu10k", "", "CPU s / 10k req (serving process)", ".3f", True),
    ("rate.rps", f"small GET at {int(rate) if rate else '?'} req/s (half of proxy saturation)", "achieved requests/s", ",.0f", False),
    ("rate.p50", "", "latency p50 (ms)", ".3f", True),
    ("rate.p99", "", "latency p99 (ms)", ".3f", True),
    ("rate.p999", "", "latency p99.9 (ms)", ".3f", False),
    ("rate.cpu10k", "", "CPU s / 10k req (serving process)", ".3f", False),
    ("rate.ctxsw", "", "context switches / request (serving process)", ".2f", False),
    ("light.p50", "small GET at 1,000 req/s, 8 conns (light load)", "latency p50 (ms)", ".3f", True),
    ("light.p99", "", "latency p99 (ms)", ".3f", True),
    ("light.cpu10k", "", "CPU s / 10k req (serving process)", ".3f", False),
    ("tok.cpu_us", "first request per token (distinct RS256 tokens, 8 conns)", "CPU µs / request (serving process)", ".1f", True),
    ("tok.p50", "", "latency p50 (ms)", ".3f", False),
    ("tok.p99", "", "latency p99 (ms)", ".3f", False),
    ("tok.rps", "", "requests/s", ",.0f", False),
    ("review.cpu_us", "--token-passthrough: first request per token (TokenReview upstream, 8 conns)", "CPU µs / request (serving process)", ".1f", True),
    ("review.p50", "", "latency p50 (ms)", ".3f", False),
    ("reviewcached.cpu_us", "--token-passthrough: one token again and again (cached review)", "CPU µs / request (serving process)", ".1f", True),
    ("reviewcached.p50", "", "latency p50 (ms)", ".3f", False),
    ("list.mbps", "large list (PodList, 2 conns)", "MB/s", ",.0f", True),
    ("list.ttfb50", "", "time to first byte p50 (ms)", ".3f", False),
    ("list.p50", "", "whole list p50 (ms)", ".2f", False),
    ("list.cpu_gb", "", "CPU s / GB (serving process)", ".3f", False),
    ("upg.mbps", "upgrade (101) echo, raw bytes", "MB/s each way", ",.0f", True),
    ("upg.cpu_gb", "", "CPU s / GB each way (serving process)", ".3f", False),
]
for n in sorted({int(k[0][1:].split(".")[0]) for k in vals if k[0].startswith("w") and "." in k[0]}):
    ROWS += [
        (f"w{n}.rss_per", f"{n:,} idle watches (HTTP/2 client, fresh processes)", "RSS KiB per watch", ".1f", False),
        (f"w{n}.idle_mib", "", "RSS before (MiB)", ".1f", False),
        (f"w{n}.rss_mib", "", "RSS with the watches open (MiB)", ".1f", False),
    ]

# derived rows
for t in TARGETS:
    for v in vals.get(("get.cpu10k", t), []):
        if v:
            vals[("get.reqpercpu", t)].append(1e4 / v)
for key, _, _, f, _ in ROWS:
    FMT[key] = f


def ratio(a, b):
    if a is None or b is None or b == 0:
        return "–"
    return f"{a / b:.2f}"


def noisy(key):
    """True when a repeated figure of kop or the pass-through varies more than twofold."""
    for t in ("kop", "passthrough"):
        v = [x for x in vals.get((key, t), []) if x > 0]
        if len(v) > 1 and max(v) / min(v) > 2:
            return True
    return False


def check(key):
    """The README's performance target a row answers, with the verdict."""
    kop, pas = get(key, "kop"), get(key, "passthrough")

    def ok(c):
        if noisy(key):
            return "⚠️ repeats differ more than 2x (machine busy): no verdict"
        return "✅" if c else "❌"

    if key == "get.cpu10k" and kop and pas:
        extra = (kop / pas - 1) * 100
        return f"≤ +15% vs pass-through: {extra:+.0f}% {ok(extra <= 15)}"
    if key in ("rate.cpu10k", "geth2.cpu10k", "light.cpu10k") and kop and pas:
        extra = (kop / pas - 1) * 100
        return f"≤ +15% vs pass-through: {extra:+.0f}% {ok(extra <= 15)}"
    if key in ("light.p50", "light.p99") and kop is not None and pas is not None:
        return f"added vs pass-through: {kop - pas:+.3f} ms"
    if key == "get.reqpercpu" and kop:
        return f"≥ 10,000/s per core: {kop:,.0f} {ok(kop >= 10000)}"
    if key == "rate.p50" and kop is not None and pas is not None:
        d = kop - pas
        return f"added ≤ 0.2 ms vs pass-through: {d:+.3f} ms {ok(d <= 0.2)}"
    if key == "rate.p99" and kop is not None and pas is not None:
        d = kop - pas
        return f"added ≤ 1 ms vs pass-through: {d:+.3f} ms {ok(d <= 1.0)}"
    if key == "tok.cpu_us":
        first, cached = get("tok.cpu_us", "kop"), get("tokcached.cpu_us", "kop")
        if first is not None and cached is not None:
            extra = first - cached
            return f"≤ 60 µs extra CPU vs cached ({cached:.1f} µs{spread('tokcached.cpu_us', 'kop')}): {extra:+.1f} µs {ok(extra <= 60)}"
    if key.startswith("w") and key.endswith(".rss_per") and kop is not None:
        return f"≤ 64 KiB per watch: {kop:.1f} KiB {ok(kop <= 64)}"
    if key == "list.ttfb50" and kop is not None and pas is not None:
        return f"no added buffering: TTFB {kop - pas:+.3f} ms vs pass-through"
    return ""


lines = [
    "# kube-oidc-proxy benchmark",
    "",
    "Written by `bench/run` (issue 6; targets from the README's Performance section). All three targets run at once on",
    "loopback with TLS on both legs: **direct** = the fake API server (`bench/upstream.rs`),",
    "**pass-through** = plain hyper + rustls TLS-to-TLS proxy without auth (`bench/passthrough.rs`),",
    "**kop** = kube-oidc-proxy, release build, cached token, RBAC decision (built-in role",
    "`bench:devops`), access log written to a file. Load: oha (fixed concurrency / fixed rate) and",
    "`bench/client.rs`. CPU is utime+stime of the serving process from /proc; medians of the",
    "repeats, (min–max) where repeated. Every process shares the same cores, so requests/s are",
    "whole-machine figures; CPU per request is the figure that does not depend on the load generator.",
    "",
]
lines += [f"- {n}" for n in notes]
lines += [
    "",
    "| workload | metric | direct | pass-through | kop | kop ÷ pass | kop ÷ direct | target |",
    "|---|---|---:|---:|---:|---:|---:|---|",
]
for key, workload, metric, f, show_spread in ROWS:
    cells = []
    for t in TARGETS:
        v = get(key, t)
        cells.append(fmt(v, f) + (spread(key, t) if show_spread and v is not None else ""))
    if all(c == "–" for c in cells):
        continue
    kop, pas, dire = get(key, "kop"), get(key, "passthrough"), get(key, "direct")
    lines.append(
        f"| {workload} | {metric} | {' | '.join(cells)} | {ratio(kop, pas)} | {ratio(kop, dire)} | {check(key)} |"
    )
spin_us = get("meta", "spin_us")
spin, pas, kop = get("get.cpu10k", "spin"), get("get.cpu10k", "passthrough"), get("get.cpu10k", "kop")
if spin and pas and kop and spin_us:
    # s per 10k requests -> µs per request: x 100
    added = (spin - pas) * 100
    kop_extra = (kop - pas) * 100
    sv = [x * 100 for x in vals.get(("get.cpu10k", "spin"), [])]
    sp = f" ({min(sv):.1f}–{max(sv):.1f})" if len(sv) > 1 else ""
    lines += [
        "",
        f"**Calibration** (small GET, HTTP/1.1, {CONC_LABEL}): the same pass-through burning {spin_us:.0f} µs of CPU per",
        f"request in a busy loop (`bench/passthrough.rs --spin-us {spin_us:.0f}`) costs {spin * 100:.1f}{sp} µs CPU per request,",
        f"{added:+.1f} µs ({(spin / pas - 1) * 100:+.0f}%) over the plain pass-through ({pas * 100:.1f} µs). kop costs",
        f"{kop_extra:+.1f} µs ({(kop / pas - 1) * 100:+.0f}%) over it: as much as {kop_extra / added * spin_us:.1f} µs of added work",
        f"at that rate of exchange. The +15% target allows {pas * 100 * 0.15:.1f} µs per request here.",
    ]
cached = get("tokcached.cpu_us", "kop")
if cached is not None:
    lines += [
        "",
        f"Same client, same count, one cached token through kop: {cached:.1f} µs CPU per request, "
        f"p50 {fmt(get('tokcached.p50', 'kop'), '.3f')} ms, p99 {fmt(get('tokcached.p99', 'kop'), '.3f')} ms.",
    ]
errors = {
    (k, t): sum(v)
    for (k, t), v in vals.items()
    if k.endswith(".errors") and sum(v) > 0
}
if errors:
    lines += ["", "Non-200 / failed requests: " + ", ".join(f"{k} {t}: {int(n)}" for (k, t), n in sorted(errors.items()))]

def cell(key, t, f, show_spread=False):
    v = get(key, t)
    return fmt(v, f) + (spread(key, t) if show_spread and v is not None else "")


# Audit on: kop with the webhook posting to a sink, one event per POST and batched, next to kop
# with audit off and the pass-through of the same run.
if get("get.cpu10k", "kopaudit") is not None:
    lines += [
        "",
        "## Audit webhook on",
        "",
        "**kop + audit** posts one JSON event per request (as the Go proxy did) to a sink (a second",
        "`bench-upstream` process: TLS, keep-alive, reads each POST, answers 200); **kop + audit, batched**",
        "adds `--audit-webhook-batch-max 64 --audit-webhook-batch-max-wait 10ms` (a JSON array per POST, "
        "waiting up to 10 ms to fill). Same load, same run.",
        "",
        "| workload | metric | pass-through | kop | kop + audit | kop + audit, batched | kop ÷ pass | audit ÷ pass | batched ÷ pass | audit ÷ kop | batched ÷ kop | target |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for prefix, label in (("get", "small GET, HTTP/1.1, 64 conns"), ("geth2", "small GET, HTTP/2, 4 conns x 16 streams")):
        for metric, mlabel, f, sp in (("rps", "requests/s", ",.0f", True), ("p50", "latency p50 (ms)", ".3f", False),
                                      ("p99", "latency p99 (ms)", ".3f", False),
                                      ("cpu10k", "CPU s / 10k req (serving process)", ".3f", True),
                                      ("sinkcpu10k", "CPU s / 10k req (the sink)", ".3f", False)):
            key = f"{prefix}.{metric}"
            p_, k_, a_, b_ = (get(key, t) for t in ("passthrough", "kop", "kopaudit", "kopbatch"))
            target = ""
            if metric == "cpu10k" and a_ and k_:
                ea, eb = (a_ / k_ - 1) * 100, (b_ / k_ - 1) * 100 if b_ else None
                target = f"≤ +15% vs audit off: {ea:+.0f}% {'✅' if ea <= 15 else '❌'}"
                if eb is not None:
                    target += f"; batched {eb:+.0f}% {'✅' if eb <= 15 else '❌'}"
            lines.append(
                f"| {label} | {mlabel} | {cell(key, 'passthrough', f, sp)} | {cell(key, 'kop', f, sp)} | "
                f"{cell(key, 'kopaudit', f, sp)} | {cell(key, 'kopbatch', f, sp)} | {ratio(k_, p_)} | {ratio(a_, p_)} | "
                f"{ratio(b_, p_)} | {ratio(a_, k_)} | {ratio(b_, k_)} | {target} |"
            )
            label = ""
    delivered = []
    for t, name in (("kopaudit", "one per POST"), ("kopbatch", "batched")):
        sent, dropped, failed = (get(f"audit.{c}", t) for c in ("sent", "dropped", "failed"))
        if sent is not None:
            delivered.append(f"{name}: {sent:,.0f} events sent, {dropped or 0:,.0f} dropped, {failed or 0:,.0f} failed")
    if delivered:
        lines += ["", "Events delivered (the proxies' counters at the end of the audited runs, warm-up included): " + "; ".join(delivered) + "."]

# Many users at size, next to one user.
if get("many.cpu_us", "kopmany") is not None:
    pas, one, many = (get("many.cpu_us", t) for t in ("passthrough", "kopone", "kopmany"))
    lines += [
        "",
        "## Many users",
        "",
        "**kop, many users**: distinct users with cached tokens (bench-issuer `--users`), each granted get on",
        "configmaps by its own RoleBinding (bench-upstream `--rbac-objects`: about as many RoleBindings over 100",
        "namespaces, as many group ClusterRoleBindings, a tenth of the objects roles), each user asking in its own",
        "namespace, round after round, so the token cache and the RBAC index work at size. **kop, one user**: the",
        "same client and count with one token of the built-in role. Both proxies fresh; the same client against the",
        "pass-through. 8 connections (`bench-client tokens --cycle`).",
        "",
        "| metric | pass-through | kop, one user | kop, many users | one ÷ pass | many ÷ pass | many ÷ one |",
        "|---|---:|---:|---:|---:|---:|---:|",
        f"| CPU µs / request (serving process) | {cell('many.cpu_us', 'passthrough', '.1f', True)} | {cell('many.cpu_us', 'kopone', '.1f', True)} | "
        f"{cell('many.cpu_us', 'kopmany', '.1f', True)} | {ratio(one, pas)} | {ratio(many, pas)} | {ratio(many, one)} |",
    ]
    for key, label, f in (("many.p50", "latency p50 (ms)", ".3f"), ("many.p99", "latency p99 (ms)", ".3f"),
                          ("many.rps", "requests/s", ",.0f"), ("many.rss_ready", "RSS when ready (MiB)", ".1f"),
                          ("many.rss_after", "RSS after the runs (MiB)", ".1f")):
        p_, o_, m_ = (get(key, t) for t in ("passthrough", "kopone", "kopmany"))
        lines.append(f"| {label} | {fmt(p_, f)} | {fmt(o_, f)} | {fmt(m_, f)} | {ratio(o_, p_)} | {ratio(m_, p_)} | {ratio(m_, o_)} |")
    first = get("manyfirst.cpu_us", "kopmany")
    if first is not None:
        lines += ["", f"First round (every user's token verified once, RBAC index at size): {first:.1f} µs CPU per request."]

# A real kube-apiserver upstream.
if get("kasget.cpu10k", "kaskop") is not None:
    lines += [
        "",
        "## Against a real kube-apiserver",
        "",
        "`bench/run --upstream=kube-apiserver`: kube-apiserver and etcd as e2e/prepare builds them, static token",
        "(system:masters) for direct clients, the pass-through and the proxy's cluster credential. *kop share* is",
        "the proxy's CPU over the proxy's plus kube-apiserver's for the same requests (etcd not counted).",
        "",
        "| workload | metric | direct | pass-through | kop | kop ÷ pass | kop ÷ direct | kop share of the request |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for prefix, label in (("kasget", "get a ConfigMap, 16 conns"), ("kaslist", "list 100 pods, 4 conns")):
        for metric, mlabel, f, sp in (("rps", "requests/s", ",.0f", True), ("p50", "latency p50 (ms)", ".3f", False),
                                      ("p99", "latency p99 (ms)", ".3f", False),
                                      ("cpu10k", "CPU s / 10k req (serving process)", ".3f", True),
                                      ("cpu10k_total", "CPU s / 10k req (incl. kube-apiserver)", ".3f", False)):
            key = f"{prefix}.{metric}"
            d_, p_, k_ = (get(key, t) for t in ("kasdirect", "kaspass", "kaskop"))
            share = ""
            if metric == "cpu10k" and k_ and get(f"{prefix}.cpu10k_total", "kaskop"):
                share = f"{k_ / get(f'{prefix}.cpu10k_total', 'kaskop') * 100:.0f}%"
            lines.append(
                f"| {label} | {mlabel} | {cell(key, 'kasdirect', f, sp)} | {cell(key, 'kaspass', f, sp)} | "
                f"{cell(key, 'kaskop', f, sp)} | {ratio(k_, p_)} | {ratio(k_, d_)} | {share} |"
            )
            label = ""
    d_, p_, k_ = (get("kaswatch.cpu_us", t) for t in ("kasdirect", "kaspass", "kaskop"))
    opened = get("kaswatch.opened", "kaskop")
    lines.append(
        f"| watch: {int(opened or 0)} ConfigMap watches (HTTP/2), {int(get('meta', 'kaswatch_updates') or 0)} updates | CPU µs per event per watcher (serving process) | "
        f"{cell('kaswatch.cpu_us', 'kasdirect', '.2f', True)} | {cell('kaswatch.cpu_us', 'kaspass', '.2f', True)} | "
        f"{cell('kaswatch.cpu_us', 'kaskop', '.2f', True)} | {ratio(k_, p_)} | {ratio(k_, d_)} |  |"
    )

lines += [
    "",
    "RBAC decision with 10k bindings, JWT verification and token-cache lookups are criterion",
    "micro-benchmarks: `cargo bench --bench authz --bench authn`.",
    "",
]
open(out_path, "w").write("\n".join(lines))
