"""PyTorch peer of `qdc bench engine`: the same matmuls and the same dispatch loop, timed the same way.

Usage: python3 bench/engine_peer.py '{"device": "cpu", "threads": 2, "sizes": [[1024, "float32"]], "minSeconds": 1}'
Prints one JSON object.
"""
import json
import sys
import time

import torch


def timed(fn, sync, min_seconds):
    fn()
    sync()
    reps, elapsed = 1, 0.0
    while True:
        t0 = time.perf_counter()
        for _ in range(reps):
            fn()
        sync()
        elapsed = time.perf_counter() - t0
        if elapsed >= min_seconds:
            return elapsed / reps
        reps = max(reps * 2, int(reps * min_seconds / max(elapsed, 1e-9) * 1.2))


def main():
    cfg = json.loads(sys.argv[1])
    torch.set_num_threads(cfg["threads"])
    dev = torch.device(cfg["device"])
    sync = (lambda: torch.cuda.synchronize()) if dev.type == "cuda" else (lambda: None)
    out = {"torch": torch.__version__, "threads": torch.get_num_threads(), "matmul": [], "dispatch": {}}
    for n, dtype in cfg["sizes"]:
        dt = getattr(torch, dtype)
        a = torch.randn(n, n, device=dev).to(dt)
        b = torch.randn(n, n, device=dev).to(dt)
        s = timed(lambda: torch.matmul(a, b), sync, cfg["minSeconds"])
        out["matmul"].append({"n": n, "dtype": dtype, "seconds": s, "gflops": 2 * n**3 / s / 1e9})
    x = torch.ones(1, device=dev)
    iters = cfg.get("dispatchIters", 200000)

    def loop():
        for _ in range(iters):
            torch.add(x, x)

    out["dispatch"]["add_us"] = timed(loop, sync, cfg["minSeconds"]) / iters * 1e6
    print(json.dumps(out))


if __name__ == "__main__":
    main()
