#!/usr/bin/env python3
"""Attributes `perf script` samples of a tidings server to the stations of the hot path.

Each sample goes to the first station in the list below whose frames all appear in its
call chain; a sample that matches none is counted as other threads' or the kernel's. Prints a Markdown table: station, share of the server's samples, and µs of
CPU per delivery (the share of `--us-per-delivery`, which the caller takes from the
harness's `cpu s` ÷ deliveries).

Usage: perf script -F comm,tid,ip,sym | scripts/profile-stations.py --us-per-delivery 64.5
"""
import argparse
import collections
import sys

# (station, frames that must all appear in the stack): the first match wins.
STATIONS = [
    ("SQLite WAL checkpoint (its own thread)", ["wal::pass"]),
    ("writer: plan the fan-out (directory, audience)", ["writer::run", "publish::publish_one", "Planner<V>::run"]),
    ("writer: INSERT events and deliveries", ["writer::run", "publish::publish_one"]),
    ("writer: outcomes (UPDATE + attempt INSERT)", ["writer::run", "outcomes::record"]),
    ("writer: COMMIT (WAL frames, checksums, pwrite)", ["writer::run", "Conn::batch"]),
    ("writer: the rest (insight flush, hand-over, batching)", ["writer::run"]),
    ("store reads of due deliveries", ["dispatch::due"]),
    ("store reads: claims (nodes sharing PostgreSQL)", ["dispatch::claim"]),
    ("inbound publish calls (HTTP server, JSON, handler)", ["hyper::server::conn"]),
    ("outbound HTTP connections (socket writes and reads)", ["hyper::client::conn"]),
    ("attempt: prepare (envelope, context, signature)", ["fill::{{closure}}::{{closure}}", "attempt::prepare"]),
    ("attempt: send (hyper client request, timeout)", ["fill::{{closure}}::{{closure}}", "Transport>::send"]),
    ("attempt: conclude (lanes, health, metrics)", ["fill::{{closure}}::{{closure}}"]),
    ("dispatcher: rounds, lanes, outcome batching", ["tidings_delivery"]),
    ("tokio: scheduler, timers, epoll", ["tokio::runtime"]),
]
OTHER = "other threads, kernel"


def stacks(lines):
    cur = []
    for line in lines:
        line = line.rstrip("\n")
        if not line.strip():
            if cur:
                yield cur
            cur = []
        elif line[:1] in (" ", "\t"):
            parts = line.strip().split(" ", 1)
            cur.append(parts[1] if len(parts) > 1 else "?")
    if cur:
        yield cur


def station(stack):
    joined = " | ".join(stack)
    for name, must in STATIONS:
        if all(m in joined for m in must):
            return name
    return OTHER


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--us-per-delivery", type=float, default=0.0)
    a = p.parse_args()
    counts = collections.Counter(station(s) for s in stacks(sys.stdin))
    total = sum(counts.values())
    if total == 0:
        sys.exit("no samples with call chains on stdin (was the server built with frame pointers?)")
    print(f"{total} samples\n")
    print("| station | share | µs/delivery |")
    print("|---|---:|---:|")
    for name, n in counts.most_common():
        print(f"| {name} | {100 * n / total:.1f} % | {a.us_per_delivery * n / total:.1f} |")


if __name__ == "__main__":
    main()
