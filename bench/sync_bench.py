#!/usr/bin/env python3
"""Sync benchmark: two FileSync clients and a server on loopback.

Scenarios (each: client A uploads with `filesync sync`, then client B downloads):
  small  - 10,000 small files (1-16 KiB, random content)
  large  - one 1 GiB file of random bytes

Reports wall time, throughput and the bytes each client moved on the wire (TLS included),
as printed by `filesync sync --json`. Uses the release binary (built if missing).

    python3 bench/sync_bench.py [--only small|large] [--files N] [--size-mib N]
"""
import argparse, json, os, random, shutil, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "filesync")
PASSWORD = "benchmark password"


def run(args, home=None, stdin=None, check=True):
    cmd = [BIN] + (["--home", home] if home else []) + args
    p = subprocess.run(cmd, input=stdin, capture_output=True, text=True)
    if check and p.returncode != 0:
        sys.exit(f"`{' '.join(cmd)}` failed:\n{p.stdout}\n{p.stderr}")
    return p.stdout


def timed_sync(home):
    t = time.perf_counter()
    out = run(["sync", "--json"], home=home)
    dt = time.perf_counter() - t
    return dt, json.loads(out)


def mib(n):
    return n / (1 << 20)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", choices=["small", "large"])
    ap.add_argument("--files", type=int, default=10_000)
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    a = ap.parse_args()
    if not os.path.exists(BIN) or os.environ.get("FILESYNC_BENCH_BUILD"):
        subprocess.run(["cargo", "build", "--release", "-p", "filesync"], cwd=ROOT, check=True)
    tmp = tempfile.mkdtemp(prefix="filesync-bench-")
    server = subprocess.Popen(
        [BIN, "server", "--data", os.path.join(tmp, "server"), "--listen", "127.0.0.1:0"],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "FILESYNC_LOG": "warn"})
    addr = fp = None
    while addr is None or fp is None:
        line = server.stdout.readline()
        if not line:
            sys.exit("server did not start")
        if line.startswith("FileSync server listening on "):
            addr = line.split()[-1]
        if line.startswith("certificate fingerprint: "):
            fp = line.split()[-1]
    try:
        homes, dirs = {}, {}
        for i, name in enumerate(["a", "b"]):
            homes[name] = os.path.join(tmp, f"home-{name}")
            dirs[name] = os.path.join(tmp, f"folder-{name}")
            os.makedirs(dirs[name])
            verb = "register" if i == 0 else "login"
            run([verb, "--server", addr, "--user", "bench", "--password-stdin", "--device-name", name,
                 "--fingerprint", fp], home=homes[name], stdin=PASSWORD + "\n")
            run(["folder", "add", dirs[name], "--name", "bench"], home=homes[name])
        results = []

        def scenario(label, files, total_bytes):
            up_t, up = timed_sync(homes["a"])
            down_t, down = timed_sync(homes["b"])
            for who, t, rep in (("A upload", up_t, up), ("B download", down_t, down)):
                w = rep["wire"]
                results.append({
                    "scenario": label, "step": who, "files": files, "bytes": total_bytes,
                    "seconds": round(t, 3), "MiB/s": round(mib(total_bytes) / t, 1),
                    "files/s": round(files / t, 1),
                    "wire_sent_MiB": round(mib(w["sent"]), 2), "wire_received_MiB": round(mib(w["received"]), 2),
                })

        if a.only in (None, "small"):
            rnd = random.Random(1)
            total = 0
            for i in range(a.files):
                d = os.path.join(dirs["a"], "small", f"d{i % 100:02d}")
                os.makedirs(d, exist_ok=True)
                data = rnd.randbytes(rnd.randint(1024, 16 * 1024))
                total += len(data)
                with open(os.path.join(d, f"file{i:05d}.txt"), "wb") as f:
                    f.write(data)
            scenario(f"{a.files} small files", a.files, total)
        if a.only in (None, "large"):
            size = a.size_mib << 20
            with open(os.path.join(dirs["a"], "large.bin"), "wb") as f:
                chunk = 64 << 20
                for off in range(0, size, chunk):
                    f.write(os.urandom(min(chunk, size - off)))
            scenario(f"one {a.size_mib} MiB file", 1, size)
        print(json.dumps(results, indent=2))
        print()
        print(f"{'scenario':<24} {'step':<11} {'seconds':>8} {'MiB/s':>8} {'files/s':>9} {'wire out MiB':>13} {'wire in MiB':>12}")
        for r in results:
            print(f"{r['scenario']:<24} {r['step']:<11} {r['seconds']:>8} {r['MiB/s']:>8} {r['files/s']:>9} "
                  f"{r['wire_sent_MiB']:>13} {r['wire_received_MiB']:>12}")
    finally:
        server.terminate()
        server.wait()
        if not a.keep:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
