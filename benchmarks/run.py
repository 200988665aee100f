"""Side-by-side benchmarks: massive_rt vs the official `massive` client vs the raw ceiling.

Run with ``make bench`` (or ``python benchmarks/run.py [--quick]``). One benchmark server process
(a MockMassiveServer, see ``bench_server.py``) serves every variant; each variant runs in a fresh
process (no shared GIL, its own peak RSS), several times in alternating order, and the table
shows min/median/max with ratios against the official client measured in the same run.
The tables are printed and written to ``benchmarks/RESULTS.md``, and README.md's speed numbers are
regenerated from it (``readme.py``).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_server  # noqa: E402
import readme  # noqa: E402

# A variant name ending in NO_ACCEL runs that variant with MASSIVE_RT_NO_EXTENSIONS=1 (the pure-Python path).
NO_ACCEL = " (no accelerator)"
THROUGHPUT = [
    "massive_rt get()", "massive_rt drain()", "massive_rt adapter", "massive_rt adapter" + NO_ACCEL,
    "massive_rt adapter inline", "massive_rt adapter thread", "massive_rt pool",
    "massive_rt raw", "official typed", "official raw", "websocket-client recv",
]  # fmt: skip
# --accelerator: the typed variants with and without the compiled accelerator, against the official client.
ACCELERATOR = [
    *(f"massive_rt {v}{suffix}" for v in ("adapter", "get()", "drain()") for suffix in ("", NO_ACCEL)),
    "official typed",
]
# ~1 KB events (a trade padded with LARGE_PAD characters): where scanning or copying per byte shows.
LARGE = -1  # the key of their results in the throughput dict
LARGE_PAD = 900
LARGE_EVENTS = ["massive_rt get()", "massive_rt adapter", "official typed", "official raw"]
LATENCY = ["massive_rt get()", "massive_rt adapter", "massive_rt adapter inline", "massive_rt adapter thread",
           "official typed"]  # fmt: skip


def run_variant(url: str, variant: str, events: int, batch: int, rate: int = 0, connections: int = 3,
                pad: int = 0) -> dict:  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "MASSIVE_RT_NO_EXTENSIONS"}
    if variant.endswith(NO_ACCEL):
        env["MASSIVE_RT_NO_EXTENSIONS"] = "1"
    command = [sys.executable, str(HERE / "variants.py"), variant.removesuffix(NO_ACCEL), "--url", url,
               "--events", str(events), "--batch", str(batch), "--rate", str(rate),
               "--connections", str(connections), "--pad", str(pad)]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False, env=env)
    if done.returncode != 0:
        raise SystemExit(f"{variant} failed:\n{done.stderr[-2000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if variant.startswith("massive_rt") and result.get("accelerated") is not (not variant.endswith(NO_ACCEL)):
        print(f"  warning: {variant}: the accelerator is {result.get('accelerator')}", file=sys.stderr)
    return result


def repeat(url: str, variants: list[str], reps: int, **kwargs: int) -> dict[str, list[dict]]:
    # Discarded runs first: the server encodes and frames each burst once (the pool asks for
    # smaller ones, one per connection), outside any measurement.
    for warm_up in ["websocket-client recv", *(v for v in variants if v == "massive_rt pool")]:
        run_variant(url, warm_up, **kwargs)
    results: dict[str, list[dict]] = {v: [] for v in variants}
    for rep in range(reps):
        order = variants if rep % 2 == 0 else list(reversed(variants))
        for variant in order:
            result = run_variant(url, variant, **kwargs)
            results[variant].append(result)
            print(f"  {variant:24s} rep {rep + 1}: {progress(result)}", file=sys.stderr)
    return results


def progress(result: dict) -> str:
    """One repetition's line: its rate; at a paced rate, its p99; for the adapter, where its
    callbacks ran (a hand-over or a backlog moves events to the dispatcher thread)."""
    line = f"{result['eps']:>12,.0f} ev/s"
    if "recv_p99_us" in result:
        line += f", p99 receive → consumer {result['recv_p99_us']:,.0f} µs"
    if result.get("dispatched_on_dispatcher") is not None and "recv_p99_us" in result:
        line += (f", {result['dispatched_on_dispatcher']:,} on the dispatcher, "
                 f"{result.get('handovers', 0)} hand-over(s)")  # fmt: skip
    return line


def throughput_table(title: str, results: dict[str, list[dict]]) -> str:
    base = statistics.median(r["eps"] for r in results["official typed"])
    base_raw = statistics.median(r["eps"] for r in results["official raw"])
    header = "| variant | min ev/s | median ev/s | max ev/s | × official typed | × official raw | peak RSS MB |"
    lines = [f"### {title}", "", header, "|---|---:|---:|---:|---:|---:|---:|"]
    for variant, runs in results.items():
        eps = sorted(r["eps"] for r in runs)
        median = statistics.median(eps)
        rss = max(r["maxrss_kb"] for r in runs) / 1024
        lines.append(f"| {variant} | {eps[0]:,.0f} | {median:,.0f} | {eps[-1]:,.0f} | {median / base:.2f} | "
                     f"{median / base_raw:.2f} | {rss:.0f} |")  # fmt: skip
    return "\n".join(lines)


def accelerator_table(title: str, results: dict[str, list[dict]]) -> str:
    """Each typed variant with and without the compiled accelerator, and the gain it brings."""
    base = statistics.median(r["eps"] for r in results["official typed"])
    lines = [f"### {title}", "", "| variant | median ev/s | × official typed | median ev/s, no accelerator | "
             "× official typed | accelerator gain |", "|---|---:|---:|---:|---:|---:|"]  # fmt: skip
    for variant in results:
        if variant.startswith("massive_rt") and not variant.endswith(NO_ACCEL):
            with_ = statistics.median(r["eps"] for r in results[variant])
            without = statistics.median(r["eps"] for r in results[variant + NO_ACCEL])
            lines.append(f"| {variant} | {with_:,.0f} | {with_ / base:.2f} | {without:,.0f} | {without / base:.2f} | "
                         f"{with_ / without - 1:+.0%} |")  # fmt: skip
    return "\n".join(lines)


def accelerator_comparison(url: str, reps: int, scale: int, frames: list[int]) -> None:
    """``--accelerator``: print the with/without comparison (RESULTS.md is left as it is)."""
    for batch, events in ((10, 300_000 // scale), (1, 100_000 // scale)):
        if batch not in frames:
            continue
        print(f"accelerator, frames of {batch}:", file=sys.stderr)
        results = repeat(url, ACCELERATOR, reps, events=events, batch=batch)
        print(accelerator_table(f"Typed events/s with and without the accelerator, {events:,} trades in frames of "
                                f"{batch} ({reps} alternating rounds)", results) + "\n")  # fmt: skip


def latency_table(title: str, results: dict[str, list[dict]]) -> str:
    """Two views per variant: server send → consumer (everything, network and server included)
    and receive → consumer (the client's own part: from its code getting the bytes off the socket)."""
    base = statistics.median(r["lat_p99_us"] for r in results["official typed"])
    base_recv = statistics.median(r["recv_p99_us"] for r in results["official typed"])
    lines = [f"### {title}", "",
             "| variant | send→consumer p50 µs | p90 | p99 | p99.9 | p99 × official | recv→consumer p50 µs | p90 | "
             "p99 | p99.9 | p99 × official |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for variant, runs in results.items():
        keys = ("lat_p50", "lat_p90", "lat_p99", "lat_p99_9", "recv_p50", "recv_p90", "recv_p99", "recv_p99_9")
        med = {k: statistics.median(r[f"{k}_us"] for r in runs) for k in keys}
        lines.append(f"| {variant} | {med['lat_p50']:.0f} | {med['lat_p90']:.0f} | {med['lat_p99']:.0f} | "
                     f"{med['lat_p99_9']:.0f} | {med['lat_p99'] / base:.2f} | {med['recv_p50']:.0f} | "
                     f"{med['recv_p90']:.0f} | {med['recv_p99']:.0f} | {med['recv_p99_9']:.0f} | "
                     f"{med['recv_p99'] / base_recv:.2f} |")  # fmt: skip
    return "\n".join(lines)


def generation_rates(reps: int, events: int) -> dict[str, list[float]]:
    """``SyntheticMarket.next_events`` alone (no adapter, no decoding), events/s per market, in this
    process with the garbage collector off (tests bound its calls per event instead: a wall-clock
    bound failed on a busy machine)."""
    import gc

    from massive_rt.synthetic import SyntheticMarket

    rates: dict[str, list[float]] = {}
    for market in ("stocks", "crypto"):
        rates[market] = []
        for rep in range(reps):
            synthetic = SyntheticMarket(market=market, seed=rep + 1)
            synthetic.next_events(1_000)  # past the first bars and lazy set-up
            gc.disable()
            try:
                started = time.perf_counter()
                synthetic.next_events(events)
                rates[market].append(events / (time.perf_counter() - started))
            finally:
                gc.enable()
    return rates


def generation_section(rates: dict[str, list[float]], events: int) -> str:
    lines = ["### Synthetic generation", "",
             f"`SyntheticMarket.next_events({events:,})` alone, one core, garbage collector off:", "",
             "| market | min ev/s | median ev/s | max ev/s |", "|---|---:|---:|---:|"]  # fmt: skip
    for market, runs in rates.items():
        ordered = sorted(runs)
        lines.append(f"| {market} | {ordered[0]:,.0f} | {statistics.median(ordered):,.0f} | {ordered[-1]:,.0f} |")
    return "\n".join(lines)


def machine_note() -> str:
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    from importlib.metadata import version

    import websocket
    import websockets

    try:
        import orjson

        fast = f"orjson {orjson.__version__}"
    except ImportError:
        fast = "stdlib json (no orjson)"
    try:
        import msgspec

        fast = f"msgspec {msgspec.__version__} (dict path: {fast})"
    except ImportError:
        pass
    return (f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; Python {platform.python_version()}; "
            f"{os.cpu_count()} cores ({cpu}); massive {version('massive')}, "
            f"websockets {websockets.__version__}, websocket-client {websocket.__version__}; "
            f"massive_rt decodes with {fast}")  # fmt: skip


def _median(runs: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def targets_table(throughput: dict[int, dict[str, list[dict]]], latency: dict[int, dict[str, list[dict]]],
                  synthetic_eps: float, idle_kb: float, generation: dict[str, list[float]]) -> str:  # fmt: skip
    """The issues' targets against this run's medians."""

    def ratio(batch: int, variant: str, base: str = "official typed") -> float:
        runs = throughput[batch]
        return _median(runs[variant], "eps") / _median(runs[base], "eps")

    def lat_ratio(rate: int, variant: str, key: str) -> float:
        runs = latency[rate]
        return _median(runs[variant], key) / _median(runs["official typed"], key)

    def verdict(ok: bool, how: str = "") -> str:
        return ("met" + (f" ({how})" if how else "")) if ok else "**not met**"

    typed = ["massive_rt adapter", "massive_rt adapter inline", "massive_rt adapter thread", "massive_rt get()",
             "massive_rt drain()", "massive_rt pool"]  # fmt: skip
    rows = []
    for batch in (10, 1):
        ratios = {v: ratio(batch, v) for v in typed}
        listed = ", ".join(f"{v.removeprefix('massive_rt ')} {r:.2f}×" for v, r in ratios.items())
        met = [v.removeprefix("massive_rt ") for v, r in ratios.items() if r >= 3]
        rows.append((f"typed ≥ 3× official at frames of {batch} (goal 5×)", listed,
                     verdict(bool(met), "all" if len(met) == len(ratios) else ", ".join(met))))  # fmt: skip
    rows.append(("raw ≥ 2× official raw", f"{ratio(10, 'massive_rt raw', 'official raw'):.2f}× (frames of 10), "
                 f"{ratio(1, 'massive_rt raw', 'official raw'):.2f}× (frames of 1)",
                 verdict(min(ratio(b, "massive_rt raw", "official raw") for b in (10, 1)) >= 2)))  # fmt: skip
    latency_variants = [v for v in LATENCY if v != "official typed"]
    for key, what in (("recv_p99_us", "receive → consumer"), ("lat_p99_us", "server send → consumer")):
        ratios = {v: lat_ratio(1_000, v, key) for v in latency_variants}
        listed = ", ".join(f"{v.removeprefix('massive_rt ')} {r:.2f}×" for v, r in ratios.items())
        met = [v.removeprefix("massive_rt ") for v, r in ratios.items() if r <= 0.6]
        rows.append((f"p99 {what} ≤ 0.6× official at 1,000 events/s", listed, verdict(bool(met), ", ".join(met))))
    ratios = {v: lat_ratio(20_000, v, "lat_p99_us") for v in latency_variants}
    rows.append(("p99 server send → consumer at 20,000 events/s",
                 ", ".join(f"{v.removeprefix('massive_rt ')} {r:.2f}×" for v, r in ratios.items()), "—"))  # fmt: skip
    overhead = {b: ratio(b, "massive_rt adapter", "massive_rt pool") - 1 for b in (10, 1)}
    rows.append(("pool overhead ≤ 10% (3 connections vs 1, same events)",
                 ", ".join(f"{o:+.0%} (frames of {b})" for b, o in overhead.items()),
                 verdict(max(overhead.values()) <= 0.10)))  # fmt: skip
    rows.append(("synthetic source ≥ 200,000 events/s into a no-op callback", f"{synthetic_eps:,.0f} median",
                 verdict(synthetic_eps >= 200_000)))  # fmt: skip
    generated = {market: statistics.median(runs) for market, runs in generation.items()}
    rows.append(("synthetic generation ≥ 300,000 events/s on one core",
                 ", ".join(f"{market} {eps:,.0f}" for market, eps in generated.items()),
                 verdict(min(generated.values()) >= 300_000)))  # fmt: skip
    rows.append(("≤ 5 MB RSS per idle connection", f"{idle_kb:.0f} KB", verdict(idle_kb <= 5 * 1024)))
    rows += speed_round_3_rows(throughput, latency)
    lines = ["### Against the targets (this run's medians)", "", "| target (issues 3, 4, 5, 19) | measured | |",
             "|---|---|---|", *(f"| {t} | {m} | {v} |" for t, m, v in rows)]  # fmt: skip
    return "\n".join(lines)


def speed_round_3_rows(throughput: dict[int, dict[str, list[dict]]],
                       latency: dict[int, dict[str, list[dict]]]) -> list[tuple[str, str, str]]:  # fmt: skip
    """Issue 19's targets: 5x with the default dispatch, get(), drain() and the pool; 3.5x without the
    accelerator; 3x at ~1 KB events; the default dispatch's p99; pool vs one connection; raw 3x."""

    def med(batch: int, variant: str, key: str = "eps") -> float:
        return _median(throughput[batch][variant], key)

    def verdict(ok: bool) -> str:
        return "met" if ok else "**not met**"

    rows = []
    typed = ["massive_rt adapter", "massive_rt get()", "massive_rt drain()", "massive_rt pool"]
    for batch in (10, 1):
        ratios = {v: med(batch, v) / med(batch, "official typed") for v in typed}
        rows.append((f"issue 19: typed ≥ 5× official at frames of {batch} (default dispatch, get, drain, pool of 3)",
                     ", ".join(f"{v.removeprefix('massive_rt ')} {r:.2f}×" for v, r in ratios.items()),
                     verdict(min(ratios.values()) >= 5)))  # fmt: skip
        plain = med(batch, "massive_rt adapter" + NO_ACCEL) / med(batch, "official typed")
        rows.append((f"issue 19: without the accelerator ≥ 3.5× at frames of {batch}", f"adapter {plain:.2f}×",
                     verdict(plain >= 3.5)))  # fmt: skip
    large = {v: med(LARGE, v) / med(LARGE, "official typed") for v in ("massive_rt adapter", "massive_rt get()")}
    rows.append(("issue 19: typed ≥ 3× official at ~1 KB events",
                 ", ".join(f"{v.removeprefix('massive_rt ')} {r:.2f}×" for v, r in large.items()),
                 verdict(min(large.values()) >= 3)))  # fmt: skip
    for rate, goal in ((1_000, 0.6), (20_000, 0.3)):
        runs = latency[rate]
        got = {key: _median(runs["massive_rt adapter"], key) / _median(runs["official typed"], key)
               for key in ("recv_p99_us", "lat_p99_us")}  # fmt: skip
        rows.append((f"issue 19: default dispatch p99 ≤ {goal}× official at {rate:,} events/s",
                     f"receive → callback {got['recv_p99_us']:.2f}×, send → callback {got['lat_p99_us']:.2f}×",
                     verdict(got["recv_p99_us"] <= goal)))  # fmt: skip
    pool = {b: med(b, "massive_rt pool") / med(b, "massive_rt adapter") for b in (10, 1)}
    rows.append(("issue 19: pool of 3 ≥ 0.97× one connection", ", ".join(f"{r:.2f}× (frames of {b})"
                 for b, r in pool.items()), verdict(min(pool.values()) >= 0.97)))  # fmt: skip
    raw = med(10, "massive_rt raw") / med(10, "official raw")
    rows.append(("issue 19: raw ≥ 3× official raw at frames of 10", f"{raw:.2f}×", verdict(raw >= 3)))
    return rows


BEGIN = "<!-- generated by benchmarks/run.py: everything up to the END marker is replaced on each run -->"
END = "<!-- END of the generated part; what follows is kept -->"


def write_report(path: Path, report: str) -> None:
    """Replace the generated part of ``path``, keeping what was written after it by hand."""
    kept = ""
    if path.exists():
        old = path.read_text()
        if END in old:
            kept = old.split(END, 1)[1]
    path.write_text(f"{BEGIN}\n\n{report}\n\n{END}{kept if kept else chr(10)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer events and one repetition")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--output", type=Path, default=HERE / "RESULTS.md")
    parser.add_argument(
        "--accelerator",
        action="store_true",
        help="only the typed variants with and without the C accelerator (printed, not written)",
    )
    parser.add_argument("--frames", default="10,1", help="with --accelerator: the frame sizes to run (10, 1 or both)")
    args = parser.parse_args()
    reps = 1 if args.quick else args.reps
    scale = 5 if args.quick else 1
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    server = context.Process(target=bench_server.serve, args=(child,), name="bench-server", daemon=True)
    server.start()
    port = parent.recv()
    url = f"ws://127.0.0.1:{port}/stocks"
    sections = []
    throughput: dict[int, dict[str, list[dict]]] = {}
    latency: dict[int, dict[str, list[dict]]] = {}
    if args.accelerator:
        try:
            accelerator_comparison(url, reps, scale, [int(f) for f in args.frames.split(",")])
        finally:
            parent.send("stop")
            server.join(10)
        return
    try:
        for batch, events in ((10, 300_000 // scale), (1, 100_000 // scale)):
            print(f"throughput, frames of {batch}:", file=sys.stderr)
            throughput[batch] = repeat(url, THROUGHPUT, reps, events=events, batch=batch)
            sections.append(throughput_table(f"Typed events/s, {events:,} trades in frames of {batch}",
                                             throughput[batch]))  # fmt: skip
        events = 100_000 // scale
        print("throughput, ~1 KB events in frames of 10:", file=sys.stderr)
        throughput[LARGE] = repeat(url, LARGE_EVENTS, reps, events=events, batch=10, pad=LARGE_PAD)
        sections.append(throughput_table(f"Larger events: typed events/s, {events:,} trades of ~1 KB in frames of 10",
                                         throughput[LARGE]))  # fmt: skip
        for rate in (1_000, 20_000):
            # At least 10,000 events: a p99 is then the 100th-slowest event of a repetition, not
            # the 30th (at 1,000 events/s, 3 seconds' worth moved the p99 ratio by ±0.1 run to run).
            events = max(rate * 3, 10_000) // scale
            print(f"latency at {rate} events/s:", file=sys.stderr)
            latency[rate] = repeat(url, LATENCY, reps, events=events, batch=1, rate=rate)
            sections.append(latency_table(f"Latency at {rate:,} events/s (frames of 1)", latency[rate]))
        print("synthetic source:", file=sys.stderr)
        synthetic = [run_variant(url, "synthetic", events=500_000 // scale, batch=1) for _ in range(reps)]
        rates = sorted(r["eps"] for r in synthetic)
        sections.append(f"### Synthetic source\n\nSyntheticSource → RealTimeDataAdapter → no-op callback "
                        f"(stocks T/Q/A/AM, generation included): min {rates[0]:,.0f}, median "
                        f"{statistics.median(rates):,.0f}, max {rates[-1]:,.0f} events/s")  # fmt: skip
        print("synthetic generation:", file=sys.stderr)
        generation = generation_rates(reps, events=100_000 // scale)
        sections.append(generation_section(generation, events=100_000 // scale))
        idle = run_variant(url, "idle rss", events=0, batch=1, connections=20)
        sections.append(f"### Memory\n\nRSS per idle, authenticated connection (20 connections): "
                        f"{idle['kb_per_connection']:.0f} KB")  # fmt: skip
        sections.append(targets_table(throughput, latency, statistics.median(rates), idle["kb_per_connection"],
                                      generation))  # fmt: skip
    finally:
        parent.send("stop")
        server.join(10)
    report = "\n\n".join(
        ["# Benchmark results", "", f"Measured {machine_note()}.",
         "Generated by `make bench` (`benchmarks/run.py`); each variant ran in its own process against one "
         "benchmark-server process, alternating order, "
         f"{reps} repetition(s), after one discarded warm-up run per stream (the server frames each burst "
         "once). Throughput is subscribe → last event consumed. Latency is measured two ways: from the "
         "server's send timestamp (network, server and client), and from the moment the client's code got "
         "the bytes off the socket (the client's own share: our reader's `received_at_ns`; for the "
         "official client, the entry of websockets' `data_received`).", *sections]
    )  # fmt: skip
    print(report)
    write_report(args.output, report)
    if args.output == HERE / "RESULTS.md":
        path = readme.ROOT / "README.md"
        path.write_text(readme.update_readme(path.read_text(encoding="utf-8"), args.output.read_text(encoding="utf-8"),
                                             readme.source_url()), encoding="utf-8")  # fmt: skip
        print(f"{path}: speed numbers updated", file=sys.stderr)


if __name__ == "__main__":
    main()
