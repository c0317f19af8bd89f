#!/usr/bin/env python3
"""Change benchmark: two running FileSync agents and a server on loopback.

For each N (number of small files), from scratch (new server, new homes, new folders):

  1. initial sync  - A's folder is filled with N files of 100-2000 random bytes (about 100 per
                     subdirectory) before anything starts; then the server and both agents
                     (`filesync agent --no-ui`, same account, same folder name, B's folder
                     empty) start. Time from starting the agents until B's folder holds all N
                     files (polled every 100 ms; then every size and a sample of contents
                     compared with A).
  2. change latency - one existing 1 KiB file on A overwritten in place (open r+, truncate,
                     write 1 KiB of new random bytes, close) 20 times, 1.5 s apart (or as
                     soon as the previous change arrived, if that took longer); each latency
                     is from the write on A until B's copy holds the new bytes (polled every
                     2 ms). Median and p90.
  3. CPU per change - utime+stime (/proc/PID/stat) of each agent across the 20 changes,
                     divided by 20: raw, and net of the idle CPU rate measured in step 4.
  4. idle          - once both agents are quiet, each agent's CPU (% of one core) and RSS
                     (VmRSS, sampled every second; VmHWM is the peak since it started) over
                     --idle-secs. The agent's periodic full rescan runs hourly (`rescan`
                     setting), outside the window; `idle_busy_seconds` in --json counts the
                     seconds in which an agent used more than 20 ms of CPU.
  5. no-change full rescan (one-shot sync) - agent A is stopped (SIGTERM) and
                     `filesync --home A sync --json` is timed: connect, pull, scan all N files,
                     plan, nothing to do.

Prints a markdown table with one row per N (and the raw numbers with --json). Uses the
release binary target/release/filesync (built if missing, or always with
FILESYNC_BENCH_BUILD=1). Agents and server log at FILESYNC_LOG=warn (--log to change) into
server.log, agent-a.log and agent-b.log in the temporary directory (kept with --keep).

    python3 bench/change_bench.py                                 # N = 10,000
    python3 bench/change_bench.py --files 10000 100000 --json
    python3 bench/change_bench.py --files 500 --idle-secs 10      # a quick check
    python3 bench/change_bench.py --files 2000 --keep --log warn,filesync_agent=debug
                                            # keeps the agents' logs, one line per pass
"""
import argparse, hashlib, json, math, os, random, shutil, signal, statistics, subprocess, sys, tempfile, threading, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "filesync")
PASSWORD = "benchmark password"
FOLDER = "bench"
FILES_PER_DIR = 100
TEMP_PREFIX = ".filesync-tmp-"
CLK_TCK = os.sysconf("SC_CLK_TCK")


class BenchError(Exception):
    pass


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --- processes -----------------------------------------------------------------------------

def run(args, home=None, stdin=None, env=None):
    cmd = [BIN] + (["--home", home] if home else []) + args
    p = subprocess.run(cmd, input=stdin, capture_output=True, text=True, env=env)
    if p.returncode != 0:
        raise BenchError(f"`{' '.join(cmd)}` failed (exit {p.returncode}):\n{p.stdout}\n{p.stderr}")
    return p.stdout


def start_server(data, logpath, env):
    errf = open(logpath, "ab")
    server = subprocess.Popen([BIN, "server", "--data", data, "--listen", "127.0.0.1:0"],
                              stdout=subprocess.PIPE, stderr=errf, text=True, env=env)
    errf.close()
    addr = fp = None
    while addr is None or fp is None:
        line = server.stdout.readline()
        if not line:
            server.wait()
            raise BenchError(f"server did not start; see {logpath}")
        if line.startswith("FileSync server listening on "):
            addr = line.split()[-1]
        if line.startswith("certificate fingerprint: "):
            fp = line.split()[-1]
    # Keep draining stdout so the server never blocks on a full pipe.
    threading.Thread(target=lambda: [None for _ in server.stdout], daemon=True).start()
    return server, addr, fp


def start_agent(home, logpath, env):
    f = open(logpath, "ab")
    p = subprocess.Popen([BIN, "--home", home, "agent", "--no-ui"],
                         stdin=subprocess.DEVNULL, stdout=f, stderr=f, env=env)
    f.close()
    return p


def stop(p, timeout=30.0):
    """SIGTERM, wait up to `timeout`, then SIGKILL. Returns the seconds it took to exit."""
    if p is None or p.poll() is not None:
        return 0.0
    t = time.perf_counter()
    p.send_signal(signal.SIGTERM)
    try:
        p.wait(timeout)
    except subprocess.TimeoutExpired:
        log(f"pid {p.pid} did not exit {timeout:.0f} s after SIGTERM; killing it")
        p.kill()
        p.wait()
    return time.perf_counter() - t


def check_alive(procs):
    for name, (p, logpath) in procs.items():
        if p.poll() is not None:
            raise BenchError(f"{name} exited with status {p.returncode}; last lines of {logpath}:\n{tail(logpath)}")


def tail(path, n=20):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return "(no log)"


# --- /proc ---------------------------------------------------------------------------------

def cpu_seconds(pid):
    """utime + stime of all the process's threads, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        data = f.read()
    fields = data[data.rindex(")") + 2:].split()  # fields[0] is field 3 (state)
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_parts_mib(pid):
    """Where the resident memory is: RssAnon (heap, stacks), RssFile (the binary's pages,
    mapped files) and RssShmem, in MiB, from /proc/PID/status."""
    parts = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key = line.split(":")[0]
            if key in ("RssAnon", "RssFile", "RssShmem"):
                parts[key] = int(line.split()[1]) / 1024
    return parts


def mem_kib(pid):
    """(VmRSS, VmHWM) in KiB."""
    rss = hwm = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
            elif line.startswith("VmHWM:"):
                hwm = int(line.split()[1])
    return rss, hwm


# --- files ---------------------------------------------------------------------------------

def rel_path(i):
    return os.path.join(f"d{i // FILES_PER_DIR:04d}", f"f{i:07d}.bin")


def make_files(folder, n, rnd):
    """N files of 100-2000 random bytes; file 0 (the one the changes overwrite) is 1 KiB.
    Returns {relative path: size}."""
    sizes = {}
    for i in range(n):
        rel = rel_path(i)
        if i % FILES_PER_DIR == 0:
            os.makedirs(os.path.join(folder, os.path.dirname(rel)), exist_ok=True)
        size = 1024 if i == 0 else rnd.randint(100, 2000)
        with open(os.path.join(folder, rel), "wb") as f:
            f.write(rnd.randbytes(size))
        sizes[rel] = size
    return sizes


def wait_all_present(folder_b, expected, deadline, procs):
    """Polls B's folder every 100 ms until every expected file is there under its final name.
    A subdirectory found complete is not listed again (files only appear)."""
    by_dir = {}
    for rel in expected:
        d, name = os.path.split(rel)
        by_dir.setdefault(d, set()).add(name)
    pending = dict(by_dir)
    while True:
        t = time.perf_counter()
        for d in list(pending):
            try:
                names = {e.name for e in os.scandir(os.path.join(folder_b, d)) if not e.name.startswith(TEMP_PREFIX)}
            except FileNotFoundError:
                continue
            if pending[d] <= names:
                del pending[d]
        if not pending:
            return time.perf_counter()
        check_alive(procs)
        if time.perf_counter() > deadline:
            missing = sum(len(v) for v in pending.values())
            raise BenchError(f"timed out: {missing} of {len(expected)} files still missing on B")
        time.sleep(max(0.0, 0.1 - (time.perf_counter() - t)))


def verify(folder_a, folder_b, expected, sample, rnd):
    """Every file on B (no more, no fewer), every size, and `sample` contents against A.
    Returns a list of problems (empty when identical)."""
    problems = []
    found = {}
    for dirpath, dirnames, filenames in os.walk(folder_b):
        for name in filenames:
            if name.startswith(TEMP_PREFIX):
                continue
            p = os.path.join(dirpath, name)
            found[os.path.relpath(p, folder_b)] = os.stat(p).st_size
    if len(found) != len(expected):
        problems.append(f"B holds {len(found)} files, A {len(expected)}")
    bad_size = [r for r, s in expected.items() if found.get(r) != s]
    if bad_size:
        problems.append(f"{len(bad_size)} files missing or of the wrong size on B, e.g. {bad_size[:3]}")
    for rel in rnd.sample(sorted(expected), min(sample, len(expected))):
        with open(os.path.join(folder_a, rel), "rb") as fa, open(os.path.join(folder_b, rel), "rb") as fb:
            if hashlib.sha256(fa.read()).digest() != hashlib.sha256(fb.read()).digest():
                problems.append(f"content differs: {rel}")
    return problems


def folder_status(home):
    try:
        with open(os.path.join(home, "status.json")) as f:
            s = json.load(f)
        return s.get("connection"), [(x.get("state"), x.get("pending")) for x in s.get("folders", [])]
    except (OSError, ValueError):
        return None, []


def wait_quiet(agents, homes, procs, timeout=300.0, window=1.0, max_cpu=0.02):
    """Until each agent reports its folder idle with nothing pending and used at most
    `max_cpu` CPU seconds over each of two consecutive `window`s. Returns the seconds waited."""
    t0 = time.perf_counter()
    calm = 0
    last = {k: cpu_seconds(p.pid) for k, p in agents.items()}
    while calm < 2:
        time.sleep(window)
        check_alive(procs)
        now = {k: cpu_seconds(p.pid) for k, p in agents.items()}
        busy = any(now[k] - last[k] > max_cpu for k in agents)
        idle = all(folder_status(homes[k]) == ("online", [("idle", 0)]) for k in agents)
        calm = calm + 1 if idle and not busy else 0
        last = now
        if time.perf_counter() - t0 > timeout:
            log(f"agents not quiet after {timeout:.0f} s (status: {[folder_status(h) for h in homes.values()]}); "
                "going on")
            break
    return time.perf_counter() - t0


def nearest_rank(values, q):
    v = sorted(values)
    return v[max(0, math.ceil(q * len(v)) - 1)]


# --- one N ---------------------------------------------------------------------------------

def bench_one(n, a, base_tmp):
    tmp = os.path.join(base_tmp, f"n{n}")
    os.makedirs(tmp)
    env = {**os.environ, "FILESYNC_LOG": a.log}
    env.pop("FILESYNC_HOME", None)
    env.pop("FILESYNC_UI_LISTEN", None)
    homes = {k: os.path.join(tmp, f"home-{k}") for k in "ab"}
    dirs = {k: os.path.join(tmp, f"folder-{k}") for k in "ab"}
    logs = {k: os.path.join(tmp, f"agent-{k}.log") for k in "ab"}
    rnd = random.Random(a.seed + n)
    res = {"files": n}

    log(f"N={n}: writing {n} files into {dirs['a']}")
    for d in dirs.values():
        os.makedirs(d)
    expected = make_files(dirs["a"], n, rnd)
    res["bytes"] = sum(expected.values())
    subprocess.run(["sync"], check=False)  # start from clean page-cache writeback, not a backlog

    server = agents = None
    agents = {}
    try:
        server, addr, fp = start_server(os.path.join(tmp, "server"), os.path.join(tmp, "server.log"), env)
        for k, verb in (("a", "register"), ("b", "login")):
            run([verb, "--server", addr, "--user", "bench", "--password-stdin", "--device-name", k,
                 "--fingerprint", fp], home=homes[k], stdin=PASSWORD + "\n", env=env)
            run(["folder", "add", dirs[k], "--name", FOLDER], home=homes[k], env=env)

        # 1. Initial sync.
        log(f"N={n}: starting the agents; waiting for B to hold all {n} files")
        t0 = time.perf_counter()
        for k in "ab":
            agents[k] = start_agent(homes[k], logs[k], env)
        procs = {"server": (server, os.path.join(tmp, "server.log")),
                 **{f"agent {k.upper()}": (agents[k], logs[k]) for k in "ab"}}
        deadline = t0 + a.timeout
        while True:
            t_done = wait_all_present(dirs["b"], expected, deadline, procs)
            problems = verify(dirs["a"], dirs["b"], expected, a.verify_sample, rnd)
            if not problems:
                break
            if time.perf_counter() > deadline:
                raise BenchError("B's folder does not match A's: " + "; ".join(problems))
            time.sleep(0.1)
        res["initial_sync_s"] = t_done - t0
        res["initial_cpu_s"] = {k: cpu_seconds(p.pid) for k, p in agents.items()}
        log(f"N={n}: initial sync {res['initial_sync_s']:.2f} s; waiting for both agents to be quiet")
        res["settle_after_initial_s"] = wait_quiet(agents, homes, procs)

        # 2./3. Change latency and CPU per change.
        target = rel_path(0)
        pa, pb = os.path.join(dirs["a"], target), os.path.join(dirs["b"], target)
        lat = []
        log(f"N={n}: {a.changes} in-place changes of {target}, {a.interval} s apart")
        cpu0 = {k: cpu_seconds(p.pid) for k, p in agents.items()}
        w0 = time.perf_counter()
        next_at = w0
        for i in range(a.changes):
            time.sleep(max(0.0, next_at - time.perf_counter()))
            new = rnd.randbytes(1024)
            t_w = time.perf_counter()
            with open(pa, "r+b") as f:
                f.truncate(0)
                f.write(new)
            seen = None
            limit = t_w + a.change_timeout
            while time.perf_counter() < limit:
                try:
                    with open(pb, "rb") as f:
                        if f.read() == new:
                            seen = time.perf_counter()
                            break
                except FileNotFoundError:
                    pass
                time.sleep(0.002)
            if seen is None:
                check_alive(procs)
                log(f"N={n}: change {i + 1} did not reach B within {a.change_timeout} s")
                lat.append(None)
                next_at = time.perf_counter()
            else:
                lat.append((seen - t_w) * 1000)
                next_at = max(t_w + a.interval, seen)
        # The CPU window ends one interval after the last change too, like every other change.
        time.sleep(max(0.0, next_at - time.perf_counter()))
        cpu1 = {k: cpu_seconds(p.pid) for k, p in agents.items()}
        res["changes_wall_s"] = time.perf_counter() - w0
        res["latency_ms"] = [None if x is None else round(x, 2) for x in lat]
        ok = [x for x in lat if x is not None]
        res["changes_lost"] = len(lat) - len(ok)
        res["latency_median_ms"] = statistics.median(ok) if ok else None
        res["latency_p90_ms"] = nearest_rank(ok, 0.9) if ok else None
        res["changes_cpu_s"] = {k: cpu1[k] - cpu0[k] for k in agents}

        # 4. Idle.
        log(f"N={n}: waiting for quiet, then {a.idle_secs} s idle")
        res["settle_after_changes_s"] = wait_quiet(agents, homes, procs)
        c0 = {k: cpu_seconds(p.pid) for k, p in agents.items()}
        i0 = time.perf_counter()
        rss = {k: [] for k in agents}
        bursts = {k: 0 for k in agents}  # seconds with more than 20 ms of CPU (e.g. a periodic rescan)
        prev = dict(c0)
        while time.perf_counter() - i0 < a.idle_secs:
            for k, p in agents.items():
                rss[k].append(mem_kib(p.pid)[0])
            time.sleep(min(1.0, max(0.0, a.idle_secs - (time.perf_counter() - i0))))
            for k, p in agents.items():
                c = cpu_seconds(p.pid)
                bursts[k] += c - prev[k] > 0.02
                prev[k] = c
        check_alive(procs)
        c1 = {k: cpu_seconds(p.pid) for k, p in agents.items()}
        idle_wall = time.perf_counter() - i0
        res["idle_wall_s"] = idle_wall
        res["idle_cpu_s"] = {k: c1[k] - c0[k] for k in agents}
        res["idle_busy_seconds"] = bursts
        res["idle_cpu_pct"] = {k: 100 * res["idle_cpu_s"][k] / idle_wall for k in agents}
        res["rss_mib"] = {k: statistics.mean(v) / 1024 for k, v in rss.items()}
        res["rss_max_mib"] = {k: max(v) / 1024 for k, v in rss.items()}
        res["rss_peak_mib"] = {k: mem_kib(p.pid)[1] / 1024 for k, p in agents.items()}
        res["rss_parts_mib"] = {k: rss_parts_mib(p.pid) for k, p in agents.items()}
        log(f"N={n}: idle RSS by kind (MiB): {res['rss_parts_mib']}")
        idle_rate = {k: res["idle_cpu_s"][k] / idle_wall for k in agents}
        res["cpu_per_change_ms"] = {k: 1000 * res["changes_cpu_s"][k] / a.changes for k in agents}
        res["cpu_per_change_net_ms"] = {
            k: 1000 * max(0.0, res["changes_cpu_s"][k] - idle_rate[k] * res["changes_wall_s"]) / a.changes
            for k in agents}

        # 5. No-change full rescan: stop agent A, time a one-shot sync.
        res["agent_a_stop_s"] = stop(agents["a"])
        log(f"N={n}: agent A stopped; timing `filesync --home A sync --json`")
        t = time.perf_counter()
        out = run(["sync", "--json"], home=homes["a"], env=env)
        res["rescan_s"] = time.perf_counter() - t
        rep = json.loads(out)
        res["rescan_report"] = rep
        moved = sum(f.get(x, 0) for f in rep.get("folders", [])
                    for x in ("uploaded", "downloaded", "deleted_local", "deleted_remote", "conflicts"))
        if moved:
            log(f"N={n}: warning: the no-change sync did something: {out}")
        log(f"N={n}: done")
        return res
    finally:
        for p in agents.values():
            stop(p, 10)
        stop(server, 10)


# --- output --------------------------------------------------------------------------------

def fmt(x, d=1):
    return "—" if x is None else f"{x:,.{d}f}"


def pair(m, d=1):
    return f"{fmt(m['a'], d)} / {fmt(m['b'], d)}"


def table(results, a):
    head = ["files", "initial sync s", "latency median / p90 ms", f"CPU per change A / B ms (net of idle)",
            "idle CPU % A / B", "RSS MiB A / B (peak)", "no-change full rescan (one-shot sync) s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for r in results:
        cpu = f"{pair(r['cpu_per_change_ms'])} ({pair(r['cpu_per_change_net_ms'])})"
        mem = f"{pair(r['rss_mib'])} ({pair(r['rss_peak_mib'])})"
        lost = f", {r['changes_lost']} lost" if r["changes_lost"] else ""
        lat = f"{fmt(r['latency_median_ms'])} / {fmt(r['latency_p90_ms'])}{lost}"
        lines.append(f"| {r['files']:,} | {fmt(r['initial_sync_s'], 2)} | {lat} | {cpu} | "
                     f"{pair(r['idle_cpu_pct'], 2)} | {mem} | {fmt(r['rescan_s'], 2)} |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--files", type=int, nargs="+", default=[10_000], metavar="N",
                    help="number of small files; several values run one after the other (default 10000)")
    ap.add_argument("--changes", type=int, default=20, help="in-place changes to time (default 20)")
    ap.add_argument("--interval", type=float, default=1.5, help="seconds between changes (default 1.5)")
    ap.add_argument("--idle-secs", type=float, default=60, help="idle measurement window (default 60)")
    ap.add_argument("--timeout", type=float, default=1800, help="initial sync timeout, seconds (default 1800)")
    ap.add_argument("--change-timeout", type=float, default=60, help="per-change timeout, seconds (default 60)")
    ap.add_argument("--verify-sample", type=int, default=1000,
                    help="files whose content is compared after the initial sync (default 1000; sizes: all)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--log", default="warn", help="FILESYNC_LOG for the server and agents (default warn)")
    ap.add_argument("--tmp", help="parent of the temporary directory (default: the system's)")
    ap.add_argument("--json", action="store_true", help="also print the raw numbers as JSON")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory (folders, homes, logs)")
    a = ap.parse_args()
    if a.changes < 1 or any(n < 1 for n in a.files):
        ap.error("--changes and --files must be at least 1")
    if not os.path.exists(BIN) or os.environ.get("FILESYNC_BENCH_BUILD"):
        subprocess.run(["cargo", "build", "--release", "-p", "filesync"], cwd=ROOT, check=True)
    # A SIGTERM to the benchmark cleans up like Ctrl-C (the finally blocks stop the children).
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    tmp = tempfile.mkdtemp(prefix="filesync-change-bench-", dir=a.tmp)
    log(f"working in {tmp}")
    results = []
    try:
        for n in a.files:
            results.append(bench_one(n, a, tmp))
    except BenchError as e:
        print(f"error: {e}", file=sys.stderr)
        if not a.keep:
            print("(rerun with --keep to keep the folders and logs)", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
    finally:
        if results:
            if a.json:
                print(json.dumps(results, indent=2))
                print()
            print(table(results, a))
        if a.keep:
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
