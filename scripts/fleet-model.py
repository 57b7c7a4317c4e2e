#!/usr/bin/env python3
"""A discrete-event model of a rolecall fleet starting against a rate-limited STS.

This is how the pacing constants of src/pacer.rs and src/schedule.rs were
chosen (docs/SCALE.md): it runs in seconds where `make fleet` takes half an
hour, and `make fleet` then measured the chosen behaviour with real
processes. It models only the start-up: N sidecars of P profiles each, an
account-wide token bucket (rate, burst), STS answering instantly.

  scripts/fleet-model.py                      both behaviours, the default scenarios
  scripts/fleet-model.py --n 1000 --p 3 --rate 5 --burst 10

Behaviours:
  per-profile  each profile backs off on its own: full jitter under 1 s * 2^k,
               capped at 60 s (rolecall before issue 14)
  pacer        src/pacer.rs: slow start (1, 2, 4 ... calls in flight); a
               throttled call sets level += 1 (at most 6), one call in flight,
               and a pause of equal jitter under 5 s * 2^(level-1) capped at
               120 s; an answered call halves the level and, while it is still
               above 0, waits a full-jitter pause under the lowered ceiling.
"""
import argparse
import heapq
import random

BASE, CAP = 1.0, 60.0  # schedule::BACKOFF_BASE, BACKOFF_CAP
T_BASE, T_CAP, MAX_LEVEL, MAX_IN_FLIGHT = 5.0, 120.0, 6, 16  # schedule, pacer


def ceiling(level):
    return min(T_CAP, T_BASE * 2 ** (level - 1))


def run(n, p, rate, burst, behaviour, surge=None, seed=1, latency=0.005):
    rnd = random.Random(seed)
    tokens, last = float(burst), 0.0
    events, seq = [], [0]

    def push(t, kind, i, prof):
        seq[0] += 1
        heapq.heappush(events, (t, seq[0], kind, i, prof))

    def take(t):
        nonlocal tokens, last
        tokens = min(burst, tokens + (t - last) * rate)
        last = t
        if tokens >= 1:
            tokens -= 1
            return True
        return False

    calls, done, ready = [0] * n, [0] * n, [None] * n
    fails = [[0] * p for _ in range(n)]
    level, hold, in_flight, window = [0] * n, [0.0] * n, [0] * n, [1] * n
    waiting = [[] for _ in range(n)]
    per_second = {}

    def pump(i, t):
        if t < hold[i]:
            push(hold[i], "pump", i, -1)
            return
        while waiting[i] and in_flight[i] < window[i]:
            in_flight[i] += 1
            push(t, "call", i, waiting[i].pop(0))

    def start(i, t):
        for prof in range(p):
            if behaviour == "per-profile":
                push(t, "call", i, prof)
            else:
                waiting[i].append(prof)
        if behaviour == "pacer":
            pump(i, t)

    started = n if surge is None else min(surge, n)
    for i in range(started):
        start(i, 0.0)
    while events:
        t, _, kind, i, prof = heapq.heappop(events)
        if kind == "pump":
            pump(i, t)
            continue
        calls[i] += 1
        per_second[int(t)] = per_second.get(int(t), 0) + 1
        accepted = take(t)
        if behaviour == "per-profile":
            if accepted:
                done[i] += 1
            else:
                d = min(CAP, BASE * 2 ** fails[i][prof]) * rnd.random()
                fails[i][prof] += 1
                push(t + latency + max(d, 0.01), "call", i, prof)
        else:
            in_flight[i] -= 1
            if accepted:
                done[i] += 1
                if level[i] > 0:
                    level[i] //= 2
                    if level[i] > 0:
                        hold[i] = max(hold[i], t + latency + ceiling(level[i]) * rnd.random())
                    else:
                        window[i] = 2
                else:
                    window[i] = min(window[i] * 2, MAX_IN_FLIGHT)
            else:
                level[i] = min(level[i] + 1, MAX_LEVEL)
                window[i] = 1
                pause = ceiling(level[i]) * (0.5 + 0.5 * rnd.random())
                hold[i] = max(hold[i], t + latency + pause)
                waiting[i].insert(0, prof)
            pump(i, t + latency)
        if accepted and done[i] == p:
            ready[i] = t + latency
            if started < n:
                start(started, t + latency)
                started += 1
    total = sum(calls)
    ordered = sorted(calls)
    return {
        "ready_s": round(max(ready), 1),
        "ideal_s": round(max(0.0, (n * p - burst) / rate), 1),
        "calls": total,
        "x_minimum": round(total / (n * p), 2),
        "per_sidecar_median_max": (ordered[n // 2], ordered[-1]),
        "peak_per_s": max(per_second.values()),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int)
    ap.add_argument("--p", type=int, default=3)
    ap.add_argument("--rate", type=float, default=50.0)
    ap.add_argument("--burst", type=int, default=100)
    ap.add_argument("--surge", type=int)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    if a.n:
        scenarios = [("custom", dict(n=a.n, p=a.p, rate=a.rate, burst=a.burst, surge=a.surge))]
    else:
        scenarios = [
            ("(a) 1000 x 3, all at once, 50/s", dict(n=1000, p=3, rate=50, burst=100)),
            ("(b) 1000 x 3, maxSurge 250, 50/s", dict(n=1000, p=3, rate=50, burst=100, surge=250)),
            ("(c) 1000 x 3, all at once, 5/s", dict(n=1000, p=3, rate=5, burst=10)),
            ("reduced test: 100 x 3, 10/s", dict(n=100, p=3, rate=10, burst=20)),
        ]
    for name, kw in scenarios:
        for behaviour in ("per-profile", "pacer"):
            r = run(behaviour=behaviour, seed=a.seed, **kw)
            print(f"{name:36} {behaviour:12} {r}")


if __name__ == "__main__":
    main()
