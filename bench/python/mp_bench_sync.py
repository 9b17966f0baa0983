#!/usr/bin/env python3
"""CPython's side of mp-proc's sync benchmarks that mp_bench.py lacks.

Same JSON-lines format as mp_bench.py. Stdlib only.
  queue_tput_2to2      Queue, 2 producer processes -> 2 consumer processes (items/s)
  lock_uncontended     Lock acquire+release in one process (ops/s)
  pingpong_rtt         Event / Semaphore ping-pong between two processes (us),
                       default placement, both on CPU 0, CPU 0 <-> CPU 1
Env: MP_BENCH_QUICK=1 (10x fewer iterations).
"""
import json
import multiprocessing as mp
import os
import sys
import time

QUICK = os.environ.get("MP_BENCH_QUICK", "") not in ("", "0")
SCALE = 0.1 if QUICK else 1.0
perf_ns = time.perf_counter_ns


def N(n):
    return max(5, int(n * SCALE))


def emit(bench, param, value, unit, n=1):
    sys.stdout.write(json.dumps({"bench": bench, "param": param, "value": value,
                                 "unit": unit, "n": n}) + "\n")
    sys.stdout.flush()


def median(v):
    s = sorted(v)
    return s[len(s) // 2]


def _producer(q, go, n):
    go.wait()
    for i in range(n):
        q.put(i)
    q.put(None)


def _consumer(q, done):
    while q.get() is not None:
        pass
    done.put(perf_ns())


def queue_2to2(ctx):
    n = N(100000)
    vals = []
    for _ in range(3):
        q, done, go = ctx.Queue(), ctx.Queue(), ctx.Event()
        ps = [ctx.Process(target=_producer, args=(q, go, n)) for _ in range(2)]
        cs = [ctx.Process(target=_consumer, args=(q, done)) for _ in range(2)]
        for p in ps + cs:
            p.start()
        t0 = perf_ns()
        go.set()
        end = max(done.get(), done.get())
        for p in ps + cs:
            p.join()
        vals.append(2 * n / ((end - t0) / 1e9))
    emit("queue_tput_2to2", "Queue", median(vals), "items/s", len(vals))


def lock_uncontended(ctx):
    lock = ctx.Lock()
    n = N(1000000)
    vals = []
    for _ in range(3):
        acq, rel = lock.acquire, lock.release
        t0 = perf_ns()
        for _ in range(n):
            acq()
            rel()
        vals.append(n / ((perf_ns() - t0) / 1e9))
    emit("lock_uncontended", "Lock", median(vals), "ops/s", len(vals))


def _pin(cpu):
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})


def _pong_event(a, b, n, cpu):
    _pin(cpu)
    for _ in range(n):
        a.wait()
        a.clear()
        b.set()


def _pong_sem(a, b, n, cpu):
    _pin(cpu)
    for _ in range(n):
        a.acquire()
        b.release()


def pingpong(ctx):
    n = N(20000)
    placements = [("", None, None), ("_samecpu", 0, 0)]
    if {0, 1} <= os.sched_getaffinity(0):
        placements.append(("_xcpu", 0, 1))
    old = os.sched_getaffinity(0)
    for sfx, pcpu, ccpu in placements:
        for kind in ("Event", "Semaphore"):
            if pcpu is not None:
                os.sched_setaffinity(0, {pcpu})
            if kind == "Event":
                a, b = ctx.Event(), ctx.Event()
                p = ctx.Process(target=_pong_event, args=(a, b, n, ccpu))
            else:
                a, b = ctx.Semaphore(0), ctx.Semaphore(0)
                p = ctx.Process(target=_pong_sem, args=(a, b, n, ccpu))
            p.start()
            t0 = perf_ns()
            for _ in range(n):
                if kind == "Event":
                    a.set()
                    b.wait()
                    b.clear()
                else:
                    a.release()
                    b.acquire()
            dt = perf_ns() - t0
            p.join()
            os.sched_setaffinity(0, old)
            emit("pingpong_rtt", kind + sfx, dt / n / 1e3, "us", n)


if __name__ == "__main__":
    ctx = mp.get_context("fork")
    queue_2to2(ctx)
    lock_uncontended(ctx)
    pingpong(ctx)
