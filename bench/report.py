"""Medians over rounds, the one table, and the verdict on each of the issue's targets."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
from typing import Any

from bench.plan import Plan, targets

PHASES: list[tuple[str, str]] = [
    ("push-mono", "push, monolithic"),
    ("push-chunked", "push, chunked (PATCH)"),
    ("storm-get", "manifest storm, GET (wrk)"),
    ("storm-head", "manifest storm, HEAD (hey)"),
    ("blob-pull", "blob pull"),
    ("blob-pull-redirect", "blob pull, redirect on"),
    ("pull-sim", "pull simulation"),
    ("pull-sim-redirect", "pull simulation, redirect"),
    ("catalog", "catalog page (n=100)"),
    ("tags", "tags list"),
    ("startup", "start-up, time to ready"),
    ("memory", "50 chunked uploads"),
    ("raw-copy", "raw S3 CopyObject"),
    ("scale-storm-get", "scale: manifest storm, GET (wrk)"),
    ("scale-pull-sim", "scale: pull simulation"),
    ("scale-pull-sim-redirect", "scale: pull sim., redirect"),
    ("scale-idle-feed", "scale: idle S3 requests"),
    ("mirror-cold", "mirror: cold storm, 50 pulls"),
    ("mirror-upstream", "mirror: upstream bytes"),
    ("mirror-warm", "mirror: warm pulls"),
]
#: The scale phase's registries, in the order its table shows them.
SCALE_REGISTRIES = ("distribution", "cargobay-1w", "cargobay-2w")
#: Cores of the scale phase's projection: requests/s = cores * 1000 / CPU ms per request.
PROJECTED_CORES = (1, 2, 16)
CEILINGS = {
    "storm-get": "ceiling: bare aiohttp, wrk GET",
    "storm-head": "ceiling: bare aiohttp, hey HEAD",
    "push-mono": "ceiling: raw aiobotocore PUT",
    "raw-copy": "ceiling: raw aiobotocore copy",
    "blob-pull": "ceiling: raw aiobotocore GET",
}
METRICS = ("throughput", "p50_ms", "p99_ms", "cpu_ms_per_request", "peak_rss_mib",
           "storage_cpu_ms_per_request", "idle_rss_mib")


def _median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b


def summarize(measures: list[Any]) -> list[dict[str, Any]]:
    """One entry per (backend, phase): each registry's medians over rounds, and ratios."""
    groups: dict[tuple[str, str], dict[str, list[Any]]] = {}
    for m in measures:
        groups.setdefault((m.backend, m.phase), {}).setdefault(m.registry, []).append(m)
    order = {p: i for i, (p, _) in enumerate(PHASES)}
    out = []
    for (backend, phase), by_registry in sorted(
        groups.items(), key=lambda kv: (kv[0][0] != "filesystem", order.get(kv[0][1], 99))
    ):
        entry: dict[str, Any] = {"backend": backend, "phase": phase, "registries": {}}
        for registry, ms in by_registry.items():
            entry["unit"] = ms[0].unit
            figures: dict[str, Any] = {k: _median([getattr(m, k) for m in ms]) for k in METRICS}
            figures["rounds"] = len(ms)
            figures["errors"] = sum(m.errors for m in ms)
            figures["client"] = ms[-1].client
            figures["client_saturated"] = any(m.client_saturated for m in ms)
            figures["per_round"] = [m.throughput for m in ms]
            figures["per_round_cpu"] = [m.cpu_ms_per_request for m in ms]
            figures["request_rate"] = _median([_request_rate(m) for m in ms])
            entry["registries"][registry] = figures
        d = entry["registries"].get("distribution")
        c = entry["registries"].get("cargobay")
        ceiling = entry["registries"].get("ceiling")
        if d and c:
            entry["ratio"] = _compare(c, d)
        if c and ceiling:
            entry["cargobay_over_ceiling"] = _ratio(c["throughput"], ceiling["throughput"])
        observed = entry["registries"].get("cargobay-observed")
        if c and observed:
            entry["observed_ratio"] = _compare(observed, c)
        peer_observed = entry["registries"].get("distribution-observed")
        if d and peer_observed:
            entry["peer_observed_ratio"] = _compare(peer_observed, d)
        out.append(entry)
    return out


def _request_rate(m: Any) -> float | None:
    """HTTP requests per second of a measure, whatever unit its throughput is in."""
    if m.unit == "req/s":
        return float(m.throughput)
    wall = m.notes.get("wall_s")
    return m.requests / wall if wall else None


def _compare(b: dict[str, Any], a: dict[str, Any]) -> dict[str, float | None]:
    """B's figures over A's, and the median of the round-by-round throughput ratios."""
    ratio = {k: _ratio(b[k], a[k]) for k in METRICS}
    paired = [_ratio(x, y) for x, y in zip(b["per_round"], a["per_round"], strict=False)]
    ratio["throughput_paired_median"] = _median(paired)
    return ratio


def _find(summary: list[dict[str, Any]], backend: str, phase: str) -> dict[str, Any] | None:
    for entry in summary:
        if entry["backend"] == backend and entry["phase"] == phase:
            return entry
    return None


def check_targets(summary: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each target of the issue with the measured value and PASS / FAIL / NOT RUN."""
    verdicts = []
    for target in targets():
        entry = _find(summary, target.backend, target.phase)
        value: float | None = None
        if entry is not None:
            c = entry["registries"].get("cargobay")
            ratio = entry.get("ratio", {})
            if target.metric == "throughput":
                value = ratio.get("throughput")
            elif target.metric == "cpu":
                value = ratio.get("cpu_ms_per_request")
            elif target.metric == "p50":
                value = ratio.get("p50_ms")
            elif target.metric == "rss":
                value = ratio.get("peak_rss_mib")
            elif target.metric == "rss-added":
                d = entry["registries"].get("distribution")
                value = _ratio(_added_rss(c), _added_rss(d))
            elif target.metric == "copy-bound":
                bound = copy_bound(summary)
                if c and bound:
                    value = c["throughput"] / bound
            elif target.metric == "raw-put":
                raw = _find(summary, "s3", "push-mono")
                ceiling = raw["registries"].get("ceiling") if raw else None
                if c and ceiling:
                    value = _ratio(c["throughput"], ceiling["throughput"])
            elif target.metric == "seconds" and c:
                value = c["throughput"]
            elif target.metric == "rss-abs" and c:
                value = c["peak_rss_mib"]
            elif target.metric in ("workers-cpu", "projection"):
                value = _scale_ratio(entry, target.metric)
            elif target.metric == "image-x" and c:
                value = c["throughput"]
        errors = 0
        # The copy bound's verdict rests on the monolithic push and the raw copy too.
        inputs = _COPY_BOUND_INPUTS if target.metric == "copy-bound" else ()
        for found in [entry, *(_find(summary, b, p) for b, p in inputs)]:
            if found is not None:
                errors += sum(f["errors"] for f in found["registries"].values())
        status = "NOT RUN" if value is None else ("PASS" if target.check(value) else "FAIL")
        if status == "FAIL" and value is not None and target.within_noise(value):
            status = "PASS~"  # missed by no more than the noise the target states
        if errors and status == "PASS":
            status = "PASS*"  # the figure holds, but some requests failed: see the JSON
        verdicts.append({
            "backend": target.backend, "phase": target.phase, "target": target.text,
            "value": value, "metric": target.metric, "status": status, "errors": errors,
        })
    return verdicts


def _added_rss(figures: dict[str, Any] | None) -> float | None:
    """What the load added to a registry's RSS: its peak less its RSS just before."""
    if not figures or figures["peak_rss_mib"] is None or figures["idle_rss_mib"] is None:
        return None
    return float(figures["peak_rss_mib"] - figures["idle_rss_mib"])


#: The entries `copy_bound` is worked out from: our monolithic push beside raw PUT, and raw copy.
_COPY_BOUND_INPUTS = (("s3", "push-mono"), ("s3", "raw-copy"))


def copy_bound(summary: list[dict[str, Any]]) -> float | None:
    """The most a chunked push on S3 can do, in MB/s: Cargobay's monolithic push,
    slowed by the copy that follows every write.

    A chunked upload's bytes are written as a monolithic push writes them, then
    copied server-side to the blob's key. With raw PUT at P MB/s and raw CopyObject
    at C, the copy adds P/C of the write's time, so the bound is the monolithic
    rate times write / (write + copy) = C / (P + C).
    """
    mono, copy = (_find(summary, backend, phase) for backend, phase in _COPY_BOUND_INPUTS)
    if mono is None or copy is None:
        return None
    ours = mono["registries"].get("cargobay")
    put, copied = mono["registries"].get("ceiling"), copy["registries"].get("ceiling")
    if not (ours and put and copied):
        return None
    p, c = put["throughput"], copied["throughput"]
    if p + c <= 0:  # every raw request failed
        return None
    return float(ours["throughput"] * c / (p + c))


def _scale_ratio(entry: dict[str, Any], metric: str) -> float | None:
    """The scale phase's ratios of CPU per request.

    "workers-cpu": Cargobay with 2 workers over Cargobay with 1. "projection":
    Cargobay's projected requests/s at 2 workers over Distribution's, which is
    Distribution's CPU per request over Cargobay's, whatever the core count.
    """
    regs = entry["registries"]
    cpu = {name: regs[name]["cpu_ms_per_request"] for name in SCALE_REGISTRIES if name in regs}
    if metric == "workers-cpu":
        return _ratio(cpu.get("cargobay-2w"), cpu.get("cargobay-1w"))
    return _ratio(cpu.get("distribution"), cpu.get("cargobay-2w"))


def _fmt(value: float | None, digits: int = 1) -> str:
    if value is None:
        return "-"
    if abs(value) >= 10000:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def _x(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def table(summary: list[dict[str, Any]], plan: Plan) -> str:
    """The one table: both registries side by side, medians over rounds, ceiling rows."""
    labels = dict(PHASES)
    header = (
        f"{'backend':<10} {'phase':<31} {'unit':<8} {'Distrib.':>9} {'Cargobay':>9} "
        f"{'C/D':>6} {'C/ceil':>6} | {'p50 ms D / C':>15} | {'p99 ms D / C':>15} | "
        f"{'CPU ms/req D / C':>17} {'C/D':>6} | {'peak RSS MiB D / C':>18} | client D / C"
    )
    lines = [header, "-" * len(header)]
    for entry in summary:
        if entry["phase"].startswith("scale-"):
            continue  # in `scale_table`
        regs = entry["registries"]
        d, c, ceil = regs.get("distribution"), regs.get("cargobay"), regs.get("ceiling")
        label = labels.get(entry["phase"], entry["phase"])
        if entry["backend"] == "s3" and entry["phase"] in ("blob-pull", "pull-sim"):
            label += ", redirect off"
        if entry["phase"] == "startup":
            label = f"start-up, {plan.startup.total_tags // 1000}k tags (s)"
        if entry["phase"] in ("catalog", "tags"):
            label += f", {plan.listing.repos // 1000}k repos"
        if entry["phase"] == "memory":
            size = plan.memory_size_for(entry["backend"]) >> 20
            label = f"{plan.memory_uploads} x {size} MiB chunked uploads"
        ratio = entry.get("ratio", {})
        digits = 2 if entry["unit"] == "s" else 1
        if d or c:
            def pair(key: str, digits: int = 1, d: Any = d, c: Any = c) -> str:
                return f"{_fmt(d and d[key], digits)} / {_fmt(c and c[key], digits)}"

            def flag(f: dict[str, Any] | None) -> str:
                if not f:
                    return "-"
                errors = f" ERR{f['errors']}" if f["errors"] else ""
                return str(f["client"]) + ("!" if f["client_saturated"] else "") + errors

            lines.append(
                f"{entry['backend']:<10} {label:<31} {entry['unit']:<8} "
                f"{_fmt(d and d['throughput'], digits):>9} "
                f"{_fmt(c and c['throughput'], digits):>9} "
                f"{_x(ratio.get('throughput')):>6} {_x(entry.get('cargobay_over_ceiling')):>6} | "
                f"{pair('p50_ms'):>15} | {pair('p99_ms'):>15} | "
                f"{pair('cpu_ms_per_request', 3):>17} {_x(ratio.get('cpu_ms_per_request')):>6} | "
                f"{pair('peak_rss_mib', 0):>18} | {flag(d)} / {flag(c)}"
            )
        if ceil:
            name = CEILINGS.get(entry["phase"], "ceiling")
            lines.append(
                f"{entry['backend']:<10} {name:<31} {entry['unit']:<8} "
                f"{'':>9} {'':>9} {'':>6} {_fmt(ceil['throughput']):>6} | "
                f"{'- / ' + _fmt(ceil['p50_ms']):>15} | {'- / ' + _fmt(ceil['p99_ms']):>15} | "
                f"{'- / ' + _fmt(ceil['cpu_ms_per_request'], 3):>17} {'':>6} | "
                f"{'- / ' + _fmt(ceil['peak_rss_mib'], 0):>18} | {ceil['client']}"
            )
    lines.append("")
    lines.append(
        "Medians over rounds; C/D = Cargobay / Distribution; C/ceil = Cargobay / ceiling row. "
        "CPU ms/req: server process\nCPU (utime+stime) / requests"
        " (ceiling rows: of the bare server, or of SeaweedFS for raw S3). Peak RSS: VmHWM reset"
        " per phase.\nclient: load generator processes (or tool threads) and the busiest one's"
        " share of a core; '!' marks a saturated\nload generator, whose figure is a floor. Server"
        " and load share 2 cores: ratios within one run are what count."
    )
    return "\n".join(lines)


def scale_table(summary: list[dict[str, Any]]) -> str:
    """The scale phase: per registry, rates, CPU per request and what C cores would serve."""
    cores = " ".join(f"{f'{c} core' + ('s' if c > 1 else ''):>9}" for c in PROJECTED_CORES)
    header = (f"{'backend':<10} {'phase':<25} {'registry':<13} {'rate':>16} {'req/s':>8} "
              f"{'CPU ms/req':>10} | projected req/s: {cores} | {'peak RSS MiB':>12} | client")
    lines = [header, "-" * len(header)]
    labels = dict(PHASES)
    for entry in summary:
        phase = entry["phase"]
        if phase not in ("scale-storm-get", "scale-pull-sim", "scale-pull-sim-redirect"):
            continue
        regs = entry["registries"]
        for name in SCALE_REGISTRIES:
            f = regs.get(name)
            if f is None:
                continue
            cpu = f["cpu_ms_per_request"]
            projected = " ".join(
                f"{_fmt(c * 1000 / cpu if cpu else None, 0):>9}" for c in PROJECTED_CORES
            )
            rate = f"{_fmt(f['throughput'])} {entry['unit']}"
            client = f["client"] + ("!" if f["client_saturated"] else "")
            errors = f" ERR{f['errors']}" if f["errors"] else ""
            lines.append(
                f"{entry['backend']:<10} {labels[phase].removeprefix('scale: '):<25} "
                f"{name:<13} {rate:>16} {_fmt(f['request_rate'], 0):>8} {_fmt(cpu, 3):>10} | "
                f"{'':>16} {projected} | {_fmt(f['peak_rss_mib'], 0):>12} | {client}{errors}"
            )
        spread = _spread(regs.get("cargobay-1w", {}).get("per_round_cpu", []))
        lines.append(
            f"{'':<10} {'':<25} CPU/req 2 workers / 1 worker: "
            f"{_x(_scale_ratio(entry, 'workers-cpu'))}; projection Cargobay 2w / Distribution: "
            f"{_x(_scale_ratio(entry, 'projection'))}; 1w CPU/req spread over rounds: "
            f"{'-' if spread is None else f'{100 * spread:.0f}%'}"
        )
    for entry in summary:
        if entry["phase"] != "scale-idle-feed":
            continue
        for name in SCALE_REGISTRIES:
            f = entry["registries"].get(name)
            if f is not None:
                rate = f["throughput"]
                lines.append(
                    f"{entry['backend']:<10} {'idle, S3 requests':<25} {name:<13} "
                    f"{rate:.2f} per second per process = {rate * 86400:,.0f} per day"
                )
    lines.append(
        "On a directory the feed is a directory listing: no storage requests to count.\n"
        "CPU ms/req: the server's whole process tree (master + workers). Projected req/s: "
        "cores x 1000 / CPU ms per request,\nan upper bound that assumes perfect scaling. "
        "Spread: (max - min) / median of the per-round figures."
    )
    return "\n".join(lines)


def _spread(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    if len(present) < 2:
        return None
    return (max(present) - min(present)) / statistics.median(present)


def smallblob_table(measures: list[Any]) -> str:
    """The small-blob phases: per backend and variant, each registry's medians over
    rounds of blobs/s, MB/s, server CPU and S3 requests per blob, and per manifest."""
    groups: dict[tuple[str, str], dict[str, list[Any]]] = {}
    for m in measures:
        if m.phase.startswith("smallblob-") and "items" in m.notes:
            groups.setdefault((m.backend, m.phase), {}).setdefault(m.registry, []).append(m)
    if not groups:
        return ""

    def med(ms: list[Any], key: str) -> float | None:
        values = [m.throughput if key == "rate" else m.notes.get(key) for m in ms]
        return _median(values)

    header = (f"{'backend':<10} {'variant':<22} {'blobs/s D / C':>15} {'C/D':>6} "
              f"{'MB/s D / C':>13} {'CPU ms/blob D / C':>18} {'C/D':>6} "
              f"{'S3 req/blob D / C':>18} {'S3 req/manifest D / C':>22} {'rounds':>6}")
    lines = [header, "-" * len(header)]
    for (backend, phase), regs in sorted(groups.items()):
        if phase.endswith("-manifests"):
            continue
        d, c = regs.get("distribution", []), regs.get("cargobay", [])
        md = groups.get((backend, phase + "-manifests"), {})
        row = {k: (med(d, k), med(c, k)) for k in
               ("rate", "mb_s", "cpu_ms_per_item", "s3_requests_per_item")}
        manifests = (med(md.get("distribution", []), "s3_requests_per_item"),
                     med(md.get("cargobay", []), "s3_requests_per_item"))

        def both(pair: tuple[float | None, float | None], digits: int = 1) -> str:
            return f"{_fmt(pair[0], digits)} / {_fmt(pair[1], digits)}"

        lines.append(
            f"{backend:<10} {phase.removeprefix('smallblob-'):<22} {both(row['rate']):>15} "
            f"{_x(_ratio(row['rate'][1], row['rate'][0])):>6} {both(row['mb_s']):>13} "
            f"{both(row['cpu_ms_per_item']):>18} "
            f"{_x(_ratio(row['cpu_ms_per_item'][1], row['cpu_ms_per_item'][0])):>6} "
            f"{both(row['s3_requests_per_item']):>18} {both(manifests):>22} "
            f"{len(c):>6}"
        )
    lines.append("")
    lines.append("Small-blob pushes: D = Distribution, C = Cargobay, medians over rounds. A blob"
                 " is HEAD, POST, PUT with the body\n(chunked: POST, one PATCH, PUT); S3 requests"
                 " are counted at the S3 side by bench/s3count.py.")
    return "\n".join(lines)


def observed_table(summary: list[dict[str, Any]]) -> str:
    """`--observed` runs: each registry with metrics and JSON access logs (B) over itself
    (A), and the CPU per request B adds (`+us`: B's median less A's, in microseconds)."""
    lines = [
        f"{'backend':<10} {'phase':<14} {'registry':<12} {'A thr':>9} {'B thr':>9} {'B/A':>6} "
        f"{'paired':>6} {'A cpu':>7} {'B cpu':>7} {'B/A':>6} {'+us':>7}  per round A | B"
    ]
    for entry in summary:
        for name, key in (("distribution", "peer_observed_ratio"), ("cargobay", "observed_ratio")):
            ratio = entry.get(key)
            if ratio is None:
                continue
            a = entry["registries"][name]
            b = entry["registries"][f"{name}-observed"]
            added = None
            if a["cpu_ms_per_request"] is not None and b["cpu_ms_per_request"] is not None:
                added = 1000 * (b["cpu_ms_per_request"] - a["cpu_ms_per_request"])
            rounds = " ".join(f"{x:.0f}" for x in a["per_round"])
            rounds += " | " + " ".join(f"{x:.0f}" for x in b["per_round"])
            lines.append(
                f"{entry['backend']:<10} {entry['phase']:<14} {name:<12} "
                f"{_fmt(a['throughput']):>9} {_fmt(b['throughput']):>9} "
                f"{_x(ratio['throughput']):>6} {_x(ratio['throughput_paired_median']):>6} "
                f"{_fmt(a['cpu_ms_per_request'], 3):>7} {_fmt(b['cpu_ms_per_request'], 3):>7} "
                f"{_x(ratio['cpu_ms_per_request']):>6} {_fmt(added, 1):>7}  {rounds}"
            )
    return "\n".join(lines)


def targets_table(verdicts: list[dict[str, Any]]) -> str:
    lines = [f"{'backend':<10} {'phase':<20} {'target':<26} {'measured':>9}  verdict"]
    for v in verdicts:
        value = v["value"]
        if value is None:
            shown = "-"
        elif v["metric"] == "seconds":
            shown = f"{value:.1f} s"
        elif v["metric"] == "rss-abs":
            shown = f"{value:.0f} MiB"
        elif v["metric"] in ("raw-put", "copy-bound"):
            shown = f"{100 * value:.0f}%"
        else:
            shown = f"{value:.2f}x"
        lines.append(f"{v['backend']:<10} {v['phase']:<20} {v['target']:<26} {shown:>9}  "
                     f"{v['status']}")
    passed = sum(v["status"].startswith("PASS") for v in verdicts)
    ran = sum(v["status"] != "NOT RUN" for v in verdicts)
    lines.append(f"{passed} of {ran} targets met ({len(verdicts) - ran} not run)")
    if any(v["status"] == "PASS~" for v in verdicts):
        lines.append("PASS~: missed by no more than the noise the target states (A/A: 15%)")
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    def version(argv: list[str]) -> str:
        try:
            out = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
        except OSError:
            return "?"
        text: str = (out.stdout or out.stderr).strip()
        return text.splitlines()[0] if text else "?"

    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "load_average_at_end": os.getloadavg(),
        "distribution": version(["/usr/bin/docker-registry", "--version"]),
        "wrk": version(["wrk", "-v"]),
    }
