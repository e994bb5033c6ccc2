#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Where certstore's share of a server handshake goes, from perf samples.

Reads `perf script -F ip,sym,dso` output of a bench_handshake worker
recorded with `perf record -F FREQ --call-graph dwarf` and prints one
markdown row per part: the time per handshake of every sample whose
innermost certstore (or SQLite) frame is that part, including what it
calls in libcrypto, libc and the kernel. Samples under csp_verify's call
of OpenSSL's own X509_verify_cert are OpenSSL's chain verification, which
the server does with or without certstore, and are not counted; nor is the
provider's one-time initialisation. A part reached through a system call
is named after the call: on a handshake's cold caches a system call costs
several times what it costs in a loop.

usage: perf_share.py --handshakes N --freq HZ --server-ns NS [--label TEXT] < script
"""
import argparse
import collections
import sys

SYSCALLS = (
    ("fstatat", "stat(2) of the database (a file replaced by rename)"),
    ("__GI___stat", "stat(2) of the database (a file replaced by rename)"),
    ("ksys_write", "write(2) of the decision log line"),
    ("__libc_write", "write(2) of the decision log line"),
    ("getpeername", "getpeername(2) for the log's peer"),
    ("pread", "pread(2): SQLite page reads"),
)


def frame_name(line):
    parts = line.strip().split(None, 1)
    return parts[1] if len(parts) > 1 else parts[0]


def classify(frames):
    """The part a sample belongs to, or None when it is not certstore's."""
    mine = [i for i, f in enumerate(frames) if "certstore.so" in f or "libsqlite3" in f]
    if not mine:
        return None
    if any("OSSL_provider_init" in f for f in frames):
        return None  # once per process
    i = mine[0]
    func = frames[i].split(" (")[0]
    if func == "csp_verify" and i > 0 and "X509_verify_cert" in frames[i - 1]:
        return None  # OpenSSL's own chain verification, called by the hook
    below = " ".join(frames[:i])
    if func == "csp_decache_put" and "X509_free" in below:
        # The connection's SSL_free would free that certificate otherwise.
        return "csp_decache_put: freeing the kept certificate it replaces (moved from SSL_free)"
    for needle, name in SYSCALLS:
        if needle in below:
            return name
    if "libsqlite3" in frames[i]:
        return "SQLite (statement, page cache, wal-index)"
    return func


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--handshakes", type=int, required=True, help="handshakes recorded")
    ap.add_argument("--freq", type=float, required=True, help="perf record -F")
    ap.add_argument("--server-ns", type=float, required=True,
                    help="server CPU ns per handshake (the worker's server_cpu_ns / count)")
    ap.add_argument("--label", default="")
    ap.add_argument("--top", type=int, default=12)
    args = ap.parse_args()
    if args.handshakes <= 0 or args.freq <= 0 or args.server_ns <= 0:
        sys.exit("perf_share: --handshakes, --freq and --server-ns must be positive")

    parts = collections.Counter()
    samples = 0
    for block in sys.stdin.read().split("\n\n"):
        frames = [frame_name(l) for l in block.strip().split("\n") if l.strip()]
        if not frames:
            continue
        samples += 1
        part = classify(frames)
        if part is not None:
            parts[part] += 1
    if samples == 0:
        sys.exit("perf_share: no samples (perf record failed?)")

    us = 1e6 / args.freq / args.handshakes  # µs per handshake that one sample stands for
    total = sum(parts.values()) * us
    server_us = args.server_ns / 1000
    label = f"{args.label}: " if args.label else ""
    print(f"| {label}**certstore, all parts** | **{total:.1f}** | **{100 * total / server_us:.1f}%** |")
    shown = 0
    for name, n in parts.most_common():
        if shown == args.top:
            rest = sum(v for _, v in parts.most_common()[shown:]) * us
            print(f"| {label}the rest | {rest:.1f} | {100 * rest / server_us:.1f}% |")
            break
        print(f"| {label}{name} | {n * us:.1f} | {100 * n * us / server_us:.1f}% |")
        shown += 1
    print(f"| {label}(server CPU per handshake; {samples} samples) | {server_us:.0f} | 100% |")


if __name__ == "__main__":
    main()
