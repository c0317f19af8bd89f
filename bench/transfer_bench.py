#!/usr/bin/env python3
"""Transfer benchmark: FileSync against rsync on the same data, in the same run.

FileSync goes A -> server -> B with two running agents (`filesync agent --no-ui`, same account
and folder). rsync goes A -> `rsync --daemon` on loopback -> B (`rsync -a --delete`, push then
pull), once plain and once with `--fsync` (every received file made durable, as FileSync does).
Each scenario starts from an identical state for every tool, and the new data "appears" in A
at once (written in a staging directory on the same disk, fsynced, then renamed into A).

  S1   10,000 random files x 4 KiB in 100 directories appear in A; time until B holds them all.
  S2   one 1 GiB random file appears in A; time until B holds it; CPU of all of the tool's
       processes (rsync: its clients and daemon; FileSync: server and agents, from /proc, from
       the change until B holds it and the agents are quiet again).
  S3   the 1 GiB file's new version = old[:512 MiB] + 4 KiB random + old[512 MiB:], written
       beside and renamed over; bytes on the wire (both legs) and time until B holds it.
  SRC  a source tree (text; the Rust sources in ~/.cargo/registry, up to --src-mib) appears
       in A; bytes on the wire against its size.

Bytes on the wire: FileSync's agents count TLS bytes sent and received (`traffic` in
`filesync status --json`), and the figure is A's plus B's (each byte crosses the wire once
per leg). rsync's is "Total bytes sent" + "Total bytes received" of both legs (`--stats`).
"Holds" means every file is present with its final size; contents are then compared with A
(outside the timing). Prints a markdown table with each FileSync figure beside rsync's and the
ratio, and the raw numbers with --json.

    python3 bench/transfer_bench.py                         # everything
    python3 bench/transfer_bench.py --only s1 s3 --size-mib 256
    python3 bench/transfer_bench.py --only s3 --repeat 5     # medians of five runs, and each run
"""
import argparse, hashlib, json, os, random, resource, shutil, statistics, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import change_bench as cb  # noqa: E402  (process helpers: run, start_server, start_agent, stop)

MIB = 1 << 20


def children_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def fsync_tree(root):
    for dirpath, _, files in os.walk(root):
        for f in files:
            fd = os.open(os.path.join(dirpath, f), os.O_RDONLY)
            os.fsync(fd)
            os.close(fd)
    subprocess.run(["sync"], check=False)


def appear(staging, target):
    """Moves every entry of `staging` into `target` (renames: the data appears at once)."""
    for name in sorted(os.listdir(staging)):
        os.replace(os.path.join(staging, name), os.path.join(target, name))


def expected_sizes(root):
    out = {}
    for dirpath, _, files in os.walk(root):
        for f in files:
            p = os.path.join(dirpath, f)
            out[os.path.relpath(p, root)] = os.path.getsize(p)
    return out


def holds(folder, expected):
    for rel, size in expected.items():
        try:
            if os.path.getsize(os.path.join(folder, rel)) != size:
                return False
        except OSError:
            return False
    return True


def wait_holds(folder, expected, timeout, procs=None, every=0.02):
    """Seconds until `folder` holds every file of `expected` with its size.

    Polls cheaply, so as not to take a core from the tool being measured: a directory's files
    are looked at again only when the directory changed (a file arriving by rename, as every
    tool here installs them, changes its directory's mtime) or changed less than 0.2 s ago (a
    change within the filesystem's timestamp granularity of the last look)."""
    t0 = time.perf_counter()
    by_dir = {}
    for rel, size in expected.items():
        by_dir.setdefault(os.path.dirname(rel), {})[rel] = size
    seen_mtime = {}
    while by_dir:
        now_ns = time.time_ns()
        for d in list(by_dir):
            try:
                m = os.stat(os.path.join(folder, d)).st_mtime_ns
            except OSError:
                continue
            if seen_mtime.get(d) == m and now_ns - m > 200_000_000:
                continue
            seen_mtime[d] = m
            pending = by_dir[d]
            for rel in [rel for rel, size in pending.items() if _has(folder, rel, size)]:
                del pending[rel]
            if not pending:
                del by_dir[d]
        if not by_dir:
            break
        if procs:
            cb.check_alive(procs)
        if time.perf_counter() - t0 > timeout:
            missing = sum(len(p) for p in by_dir.values())
            raise cb.BenchError(f"{missing} files still missing in {folder} after {timeout:.0f} s")
        time.sleep(every)
    return time.perf_counter() - t0


def _has(folder, rel, size):
    try:
        return os.path.getsize(os.path.join(folder, rel)) == size
    except OSError:
        return False


def same_content(a, b, expected):
    for rel in expected:
        if _digest(os.path.join(a, rel)) != _digest(os.path.join(b, rel)):
            raise cb.BenchError(f"{rel} differs between A and B")


def _digest(path):
    h = hashlib.blake2b()
    with open(path, "rb") as f:
        while chunk := f.read(4 * MIB):
            h.update(chunk)
    return h.digest()


# --- data ----------------------------------------------------------------------------------

def make_small_files(root, n, size, rnd):
    for i in range(n):
        d = os.path.join(root, f"d{i % 100:03}")
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, f"f{i:05}.bin"), "wb") as f:
            f.write(rnd.randbytes(size))


def make_big_file(path, size, seed):
    rnd = random.Random(seed)
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, 16 * MIB)
            f.write(rnd.randbytes(n))
            left -= n


def insert_at(old, new, offset, data):
    with open(old, "rb") as src, open(new, "wb") as dst:
        left = offset
        while left:
            chunk = src.read(min(left, 16 * MIB))
            dst.write(chunk)
            left -= len(chunk)
        dst.write(data)
        while chunk := src.read(16 * MIB):
            dst.write(chunk)
        dst.flush()
        os.fsync(dst.fileno())


def copy_source_tree(dst, limit):
    """Copies text sources (.rs, .toml, .md) from the cargo registry until `limit` bytes."""
    src = os.path.expanduser("~/.cargo/registry/src")
    total = 0
    for dirpath, dirs, files in os.walk(src):
        dirs.sort()
        for f in sorted(files):
            if not f.endswith((".rs", ".toml", ".md")):
                continue
            p = os.path.join(dirpath, f)
            size = os.path.getsize(p)
            if total + size > limit:
                return total
            rel = os.path.relpath(p, src)
            os.makedirs(os.path.join(dst, os.path.dirname(rel)), exist_ok=True)
            shutil.copyfile(p, os.path.join(dst, rel))
            total += size
    return total


# --- rsync ---------------------------------------------------------------------------------

class Rsync:
    """An rsync daemon on loopback serving one module, and the two legs through it."""

    def __init__(self, tmp, fsync):
        self.tmp, self.fsync = tmp, fsync
        self.module = os.path.join(tmp, "rsync-server")
        os.makedirs(self.module, exist_ok=True)
        self.port = _free_port()
        conf = os.path.join(tmp, "rsyncd.conf")
        with open(conf, "w") as f:
            f.write(f"use chroot = no\nuid = root\ngid = root\n[m]\n  path = {self.module}\n  read only = no\n")
        self.daemon = subprocess.Popen(
            ["rsync", "--daemon", "--no-detach", f"--config={conf}", f"--port={self.port}", "--address=127.0.0.1",
             f"--log-file={os.path.join(tmp, 'rsyncd.log')}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 10
        while subprocess.run(["rsync", f"rsync://127.0.0.1:{self.port}/"], capture_output=True).returncode != 0:
            if time.time() > deadline:
                raise cb.BenchError("rsync daemon did not start")
            time.sleep(0.05)

    def _leg(self, src, dst):
        args = ["rsync", "-a", "--delete", "--stats"] + (["--fsync"] if self.fsync else []) + [src, dst]
        p = subprocess.run(args, capture_output=True, text=True)
        if p.returncode != 0:
            raise cb.BenchError(f"{' '.join(args)} failed: {p.stderr}")
        wire = 0
        for line in p.stdout.splitlines():
            if line.startswith(("Total bytes sent:", "Total bytes received:")):
                wire += int(line.split(":")[1].strip().replace(",", ""))
        return wire

    def sync(self, a, b):
        """Push A, pull into B; returns the bytes on the wire of both legs."""
        url = f"rsync://127.0.0.1:{self.port}/m/"
        return self._leg(a.rstrip("/") + "/", url) + self._leg(url, b.rstrip("/") + "/")

    def close(self):
        cb.stop(self.daemon, 10)


def _free_port():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# --- FileSync ------------------------------------------------------------------------------

class FileSync:
    """A server and two agents syncing folder A with folder B."""

    def __init__(self, tmp, a, b, log_filter):
        self.env = {**os.environ, "FILESYNC_LOG": log_filter}
        for k in ("FILESYNC_HOME", "FILESYNC_UI_LISTEN"):
            self.env.pop(k, None)
        self.homes = {k: os.path.join(tmp, f"home-{k}") for k in "ab"}
        self.dirs = {"a": a, "b": b}
        self.server, addr, fp = cb.start_server(os.path.join(tmp, "server"), os.path.join(tmp, "server.log"), self.env)
        for k, verb in (("a", "register"), ("b", "login")):
            cb.run([verb, "--server", addr, "--user", "bench", "--password-stdin", "--device-name", k,
                    "--fingerprint", fp], home=self.homes[k], stdin=cb.PASSWORD + "\n", env=self.env)
            cb.run(["folder", "add", self.dirs[k], "--name", cb.FOLDER], home=self.homes[k], env=self.env)
        self.logs = {k: os.path.join(tmp, f"agent-{k}.log") for k in "ab"}
        self.agents = {k: cb.start_agent(self.homes[k], self.logs[k], self.env) for k in "ab"}
        self.procs = {"server": (self.server, os.path.join(tmp, "server.log")),
                      **{f"agent {k.upper()}": (self.agents[k], self.logs[k]) for k in "ab"}}
        self.quiet()

    def quiet(self):
        cb.wait_quiet(self.agents, self.homes, self.procs)

    def wire(self):
        """TLS bytes A and B moved so far, from their status (written within a second)."""
        total = 0
        for k in "ab":
            out = cb.run(["status", "--json"], home=self.homes[k], env=self.env)
            t = json.loads(out).get("traffic", {})
            total += t.get("wire_sent", 0) + t.get("wire_received", 0)
        return total

    def cpu(self):
        """CPU seconds the server and both agents have used so far."""
        return sum(self.cpu_each().values())

    def cpu_each(self):
        """CPU seconds so far of each process: {"server": …, "agent A": …, "agent B": …}."""
        return {name: cb.cpu_seconds(p.pid) for name, (p, _) in self.procs.items()}

    def close(self):
        for p in self.agents.values():
            cb.stop(p)
        cb.stop(self.server)


# --- scenarios -----------------------------------------------------------------------------

def scenario(name, tools, prepare, change, timeout):
    """Runs one scenario for every tool: `prepare(a)` builds the starting state in A (synced to B
    before timing), `change(a, staging)` makes the new data appear in A. Returns per-tool
    {seconds, cpu, wire}."""
    out = {}
    for tool in tools:
        tmp = tempfile.mkdtemp(prefix=f"{name}-{tool}-", dir=ARGS.dir)
        a, b, staging = (os.path.join(tmp, x) for x in ("a", "b", "staging"))
        for d in (a, b, staging):
            os.makedirs(d)
        prepare(a)
        fsync_tree(a)
        if tool == "filesync":
            fs = FileSync(tmp, a, b, ARGS.log)
            try:
                expected = expected_sizes(a)
                wait_holds(b, expected, timeout, fs.procs)
                fs.quiet()
                wire0, cpu_start = fs.wire(), fs.cpu_each()
                change(a, staging)
                expected = expected_sizes(a)
                cb.log(f"{name}: FileSync: waiting for B to hold {len(expected)} files")
                seconds = wait_holds(b, expected, timeout, fs.procs)
                fs.quiet()
                cpu_each = {k: v - cpu_start[k] for k, v in fs.cpu_each().items()}
                cpu = sum(cpu_each.values())
                cb.log(f"{name}: FileSync: CPU " + ", ".join(f"{k} {v:.2f} s" for k, v in cpu_each.items()))
                wire = fs.wire() - wire0
            finally:
                fs.close()
        else:
            r = Rsync(tmp, fsync=(tool == "rsync --fsync"))
            try:
                r.sync(a, b)
                change(a, staging)
                expected = expected_sizes(a)
                cb.log(f"{name}: {tool}: pushing and pulling {len(expected)} files")
                cpu_start = children_cpu()
                t0 = time.perf_counter()
                wire = r.sync(a, b)
                seconds = time.perf_counter() - t0
            finally:
                r.close()
            cpu = children_cpu() - cpu_start
        same_content(a, b, expected)
        out[tool] = {"seconds": seconds, "cpu": cpu, "wire": wire}
        cb.log(f"{name}: {tool}: {seconds:.2f} s, {cpu:.1f} s CPU, {wire / 1024:.0f} KiB on the wire")
        if not ARGS.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def s1(tools):
    def change(a, staging):
        make_small_files(staging, ARGS.files, 4096, random.Random(1))
        fsync_tree(staging)
        appear(staging, a)
    return scenario("S1", tools, lambda a: None, change, 600)


def s2(tools):
    size = ARGS.size_mib * MIB

    def change(a, staging):
        make_big_file(os.path.join(staging, "big.bin"), size, 2)
        fsync_tree(staging)
        appear(staging, a)
    return scenario("S2", tools, lambda a: None, change, 1200)


def s3(tools):
    size = ARGS.size_mib * MIB

    def prepare(a):
        make_big_file(os.path.join(a, "big.bin"), size, 2)

    def change(a, staging):
        new = os.path.join(a, ".big.bin.new")
        insert_at(os.path.join(a, "big.bin"), new, size // 2, random.Random(3).randbytes(4096))
        os.replace(new, os.path.join(a, "big.bin"))
    return scenario("S3", tools, prepare, change, 1200)


def src(tools):
    sizes = {}

    def change(a, staging):
        sizes["bytes"] = copy_source_tree(staging, ARGS.src_mib * MIB)
        fsync_tree(staging)
        appear(staging, a)
    out = scenario("SRC", tools, lambda a: None, change, 1200)
    for r in out.values():
        r["tree_bytes"] = sizes["bytes"]
    return out


# --- report --------------------------------------------------------------------------------

def table(results):
    rows = ["| scenario | measure | rsync | rsync --fsync | FileSync | FileSync / rsync | FileSync / rsync --fsync |",
            "|---|---|---|---|---|---|---|"]

    def row(scen, measure, key, fmt):
        r = results[scen]
        vals = [r.get(t, {}).get(key) for t in ("rsync", "rsync --fsync", "filesync")]
        cells = [fmt(v) if v is not None else "–" for v in vals]
        ratio = lambda x, y: f"{x / y:.2f}" if x is not None and y else "–"
        rows.append(f"| {scen} | {measure} | {cells[0]} | {cells[1]} | {cells[2]} | {ratio(vals[2], vals[0])} | "
                    f"{ratio(vals[2], vals[1])} |")

    secs = lambda v: f"{v:.2f} s"
    kib = lambda v: f"{v / 1024:,.0f} KiB"
    for scen in results:
        row(scen, "time until B holds it", "seconds", secs)
        row(scen, "CPU, all processes", "cpu", secs)
        row(scen, "bytes on the wire", "wire", kib)
        if scen == "SRC":
            tree = next(iter(results[scen].values()))["tree_bytes"]
            rows.append(f"| SRC | tree size | {kib(tree)} | | | | |")
    return "\n".join(rows)


def median_of(runs):
    """Per tool, the median of each measure over `runs` (the scenario's results, one per run),
    with every run's figures under "runs"."""
    out = {}
    for tool in runs[0]:
        keys = runs[0][tool].keys()
        each = {k: [r[tool][k] for r in runs] for k in keys}
        out[tool] = {k: statistics.median(v) for k, v in each.items()}
        out[tool]["runs"] = each
    return out


def main():
    global ARGS
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="+", choices=["s1", "s2", "s3", "src"], default=["s1", "s2", "s3", "src"])
    ap.add_argument("--tools", nargs="+", choices=["rsync", "rsync --fsync", "filesync"],
                    default=["rsync", "rsync --fsync", "filesync"])
    ap.add_argument("--files", type=int, default=10000, help="S1: number of 4 KiB files")
    ap.add_argument("--size-mib", type=int, default=1024, help="S2, S3: size of the big file")
    ap.add_argument("--src-mib", type=int, default=100, help="SRC: size of the source tree")
    ap.add_argument("--dir", default=None, help="where to put the data (default: system temp dir)")
    ap.add_argument("--log", default="warn")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--repeat", type=int, default=1,
                    help="run each scenario this many times and report the medians (timings vary by run)")
    ap.add_argument("--json", action="store_true")
    ARGS = ap.parse_args()
    if not os.path.exists(cb.BIN) or os.environ.get("FILESYNC_BENCH_BUILD"):
        subprocess.run(["cargo", "build", "--release", "-p", "filesync"], cwd=cb.ROOT, check=True)
    if shutil.which("rsync") is None:
        sys.exit("rsync is not installed (apt-get install rsync)")
    results = {}
    for name in ARGS.only:
        runs = [{"s1": s1, "s2": s2, "s3": s3, "src": src}[name](ARGS.tools) for _ in range(ARGS.repeat)]
        results[name.upper()] = median_of(runs)
    print(table(results))
    if ARGS.repeat > 1:
        print(f"\nMedians of {ARGS.repeat} runs; each run's time until B holds it:")
        for scen, r in results.items():
            for tool, v in r.items():
                print(f"  {scen} {tool}: " + ", ".join(f"{x:.2f}" for x in v["runs"]["seconds"]) + " s")
    if ARGS.json:
        print(json.dumps(results, indent=2))


ARGS = None

if __name__ == "__main__":
    try:
        main()
    except cb.BenchError as e:
        sys.exit(f"benchmark failed: {e}")
