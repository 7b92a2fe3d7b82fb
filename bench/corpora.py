"""Log corpora for the compression benchmark: the recipe, never the data.

    python bench/corpora.py OUTDIR [--mb 24] [--only nginx,jvm,...]

Real logs are written by real programs installed from Debian (``apt-get install nginx-light
postgresql default-jdk-headless``), run here on 127.0.0.1 only, then framed as Docker's
json-file driver frames a container's output (one ``{"log","stream","time"}`` object a line),
since that is what the archiver stores:

* ``nginx``: nginx's access log (combined format) and error log under a request load from this
  script (static files, missing ones, redirects, forbidden directories, query strings);
* ``jvm``: a small Java program's ``java.util.logging`` output, full of the JDK's own stack
  traces (``NumberFormatException``, ``NoSuchFileException``, ``DateTimeParseException``… with
  ``Caused by:`` chains), compiled and run by the installed JDK;
* ``postgres``: PostgreSQL's text log (``log_statement=all``, durations, connections, errors)
  under ``pgbench``; ``postgres-json``: the same server's ``jsonlog`` (structured);

and two synthetic ones: ``loggen`` (bench/loggen.py) and ``salad`` (random words from a
dozen-word vocabulary, a line each: the case where libdeflate's match search is weakest).
A corpus whose program is missing is skipped with one line saying what to install.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import loggen  # noqa: E402

ALL = ("nginx", "jvm", "postgres", "postgres-json", "loggen", "salad")
SALAD_WORDS = "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima".split()


class Missing(Exception):
    """A program the corpus needs is not installed."""


def json_file(lines: Iterable[bytes | tuple[bytes, str]], out, *, stream: str = "stdout",
              start: datetime | None = None, limit: int | None = None) -> int:
    """Frame raw output lines (or (line, stream) pairs) as Docker's json-file driver does.

    Stops after about ``limit`` bytes; returns the bytes written.
    """
    t = start or datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    rnd = random.Random(7)
    n = 0
    for item in lines:
        raw, where = item if isinstance(item, tuple) else (item, stream)
        t += timedelta(microseconds=rnd.randint(50, 4000))
        stamp = t.strftime("%Y-%m-%dT%H:%M:%S.%f") + f"{rnd.randint(0, 999):03d}Z"
        text = raw.decode("utf-8", "replace")
        line = json.dumps({"log": text if text.endswith("\n") else text + "\n", "stream": where, "time": stamp},
                          separators=(",", ":")).encode() + b"\n"
        out.write(line)
        n += len(line)
        if limit is not None and n >= limit:
            break
    return n


def _need(*programs: str, apt: str) -> list[str]:
    found = [shutil.which(p) or "" for p in programs]
    missing = [p for p, f in zip(programs, found, strict=True) if not f]
    if missing:
        raise Missing(f"{', '.join(missing)} not found (apt-get install {apt})")
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- nginx ----------------------------------------------------------------------------------
NGINX_CONF = """
worker_processes 1;
daemon off;
pid {root}/nginx.pid;
error_log {root}/error.log notice;
events {{ worker_connections 256; }}
http {{
  access_log {root}/access.log combined;
  client_body_temp_path {root}/tmp;
  proxy_temp_path {root}/tmp;
  fastcgi_temp_path {root}/tmp;
  uwsgi_temp_path {root}/tmp;
  scgi_temp_path {root}/tmp;
  server {{
    listen 127.0.0.1:{port};
    root {root}/www;
    location /old/ {{ return 301 /new/; }}
    location /api/ {{ return 200 '{{"ok":true}}'; }}
  }}
}}
"""
AGENTS = [
    "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/119.0 Safari/537.36",
    "curl/7.88.1", "kube-probe/1.28", "Go-http-client/1.1", "python-requests/2.31.0",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
]


def _requests(rnd: random.Random, port: int, n: int) -> bytes:
    out = []
    for i in range(n):
        r = rnd.random()
        if r < 0.45:
            path = f"/static/{rnd.choice(['app', 'vendor', 'main'])}.{rnd.getrandbits(32):08x}.js"
        elif r < 0.60:
            path = f"/api/v1/{rnd.choice(['users', 'orders', 'items'])}/{rnd.randint(1, 99999)}?page={rnd.randint(1, 9)}"
        elif r < 0.72:
            path = f"/missing/{rnd.choice(['favicon.ico', 'wp-login.php', '.env', 'robots.txt'])}"
        elif r < 0.80:
            path = "/old/" + rnd.choice(["a", "b", "c"])
        elif r < 0.86:
            path = "/private/"
        else:
            path = f"/index.html?utm_source={rnd.choice(['mail', 'ads', 'x'])}&id={rnd.getrandbits(40):x}"
        ref = rnd.choice(["-", f"http://127.0.0.1:{port}/", "https://example.org/search?q=logs"])
        last = i == n - 1
        out.append(
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: {rnd.choice(AGENTS)}\r\n"
            f"Referer: {ref}\r\n{'Connection: close' if last else 'Connection: keep-alive'}\r\n\r\n"
        )
    return "".join(out).encode()


def nginx(out: Path, target: int) -> None:
    (binary,) = _need("nginx", apt="nginx-light")
    with tempfile.TemporaryDirectory(prefix="corpus-nginx.") as tmp:
        root = Path(tmp)
        os.chmod(root, 0o755)
        for d in ("www/static", "www/private", "tmp"):
            (root / d).mkdir(parents=True)
        (root / "www/index.html").write_text("<html>hello</html>\n")
        for name in ("app", "vendor", "main"):
            (root / f"www/static/{name}.js").write_text("x")
        port = _free_port()
        (root / "nginx.conf").write_text(NGINX_CONF.format(root=root, port=port))
        proc = subprocess.Popen([binary, "-p", str(root), "-c", str(root / "nginx.conf")],
                                stderr=subprocess.DEVNULL)
        try:
            for _ in range(200):
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    time.sleep(0.05)
            rnd = random.Random(11)
            # Access lines are ~60% of the framed bytes; stop once the logs are that big.
            while (root / "access.log").stat().st_size + (root / "error.log").stat().st_size < target * 0.8:
                with socket.create_connection(("127.0.0.1", port)) as s:
                    s.sendall(_requests(rnd, port, 200))
                    while s.recv(1 << 16):
                        pass
        finally:
            proc.terminate()
            proc.wait()
        with open(out, "wb") as fh:
            # Two streams of one container, as an nginx image sends access to stdout, errors to stderr.
            with open(root / "access.log", "rb") as a, open(root / "error.log", "rb") as e:
                json_file(_interleave(a, e), fh)


def _interleave(a, e) -> Iterable[tuple[bytes, str]]:
    errors = ((x, "stderr") for x in e)
    for i, line in enumerate(a):
        yield line, "stdout"
        if i % 7 == 0:
            yield from (x for x, _ in zip(errors, range(1), strict=False))
    yield from errors


# --- JVM --------------------------------------------------------------------------------------
JAVA = r"""
import java.nio.file.*; import java.time.*; import java.time.format.*; import java.util.*;
import java.util.logging.*; import java.net.*;
public class Service {
  static final Logger LOG = Logger.getLogger("com.example.orders.Service");
  static final Random R = new Random(42);
  static int parse(String s) { return Integer.parseInt(s); }
  static byte[] load(String p) throws Exception { return Files.readAllBytes(Paths.get(p)); }
  static LocalDate date(String s) { return LocalDate.parse(s, DateTimeFormatter.ISO_LOCAL_DATE); }
  static URI uri(String s) throws URISyntaxException { return new URI(s); }
  static Object step(int kind, int depth) throws Exception {
    if (depth > 0) return step(kind, depth - 1);
    switch (kind) {
      case 0: return parse("12x" + R.nextInt(1000));
      case 1: return load("/nonexistent/config-" + R.nextInt(50) + ".yaml");
      case 2: return date("2026-13-" + (10 + R.nextInt(20)));
      case 3: return uri("http://host/ path" + R.nextInt(99));
      default: return new ArrayList<Integer>().get(R.nextInt(5));
    }
  }
  public static void main(String[] a) throws Exception {
    long bytes = Long.parseLong(a[0]);
    long n = 0;
    while (n < bytes) {
      int order = R.nextInt(1_000_000);
      String msg = "order " + order + " for tenant t" + R.nextInt(40) + " in " + R.nextInt(900) + " ms";
      LOG.info("processed " + msg);
      n += 120 + msg.length();
      if (R.nextInt(4) == 0) {
        try { step(R.nextInt(5), R.nextInt(12)); }
        catch (Exception e) {
          RuntimeException w = new RuntimeException("order " + order + " failed", e);
          LOG.log(Level.SEVERE, "request failed: " + msg, w);
          n += 2600;
        }
      } else if (R.nextInt(3) == 0) {
        LOG.warning("slow upstream inventory-" + R.nextInt(8) + ": " + R.nextInt(5000) + " ms");
        n += 140;
      }
    }
  }
}
"""


def jvm(out: Path, target: int) -> None:
    javac, java = _need("javac", "java", apt="default-jdk-headless")
    with tempfile.TemporaryDirectory(prefix="corpus-jvm.") as tmp:
        (Path(tmp) / "Service.java").write_text(JAVA)
        subprocess.run([javac, "Service.java"], cwd=tmp, check=True)
        log = Path(tmp) / "stderr.log"
        with open(log, "wb") as err:  # java.util.logging writes to stderr
            subprocess.run([java, "-Xmx64m", "-cp", tmp, "Service", str(int(target * 0.88))],
                           cwd=tmp, stderr=err, check=True)
        with open(out, "wb") as fh, open(log, "rb") as src:
            json_file(src, fh, stream="stderr")


# --- PostgreSQL ---------------------------------------------------------------------------------
def postgres(out_text: Path, out_json: Path, target: int) -> None:
    bindir = Path(subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True).stdout.strip()) \
        if shutil.which("pg_config") else None
    if bindir is None or not (bindir / "postgres").exists():
        found = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"))
        if not found:
            raise Missing("postgres not found (apt-get install postgresql)")
        bindir = found[-1].parent
    (pgbench,) = _need("pgbench", apt="postgresql-contrib")
    as_user: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        as_user = ["runuser", "-u", "postgres", "--"]
    with tempfile.TemporaryDirectory(prefix="corpus-pg.") as tmp:
        os.chmod(tmp, 0o777)
        data = Path(tmp) / "data"
        run = lambda *cmd, **kw: subprocess.run([*as_user, *cmd], check=True, **kw)  # noqa: E731
        run(str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", stdout=subprocess.DEVNULL)
        opts = (f"-c listen_addresses='' -k {tmp} -c logging_collector=on -c log_destination=stderr,jsonlog "
                "-c log_directory=log -c log_filename=pg -c log_statement=all -c log_min_duration_statement=0 "
                "-c log_connections=on -c log_disconnections=on -c log_checkpoints=on "
                "-c log_line_prefix='%m [%p] %q%u@%d ' -c checkpoint_timeout=30s")
        run(str(bindir / "pg_ctl"), "-D", str(data), "-o", opts, "-w", "start", stdout=subprocess.DEVNULL)
        try:
            bench = [pgbench, "-h", tmp, "-U", "postgres", "postgres"]
            run(*bench[:-1], "-i", "-s", "2", "postgres", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            # Failing statements too (pgbench stops a client at its first error; psql goes on).
            script = Path(tmp) / "errors.sql"
            script.write_text("".join(
                f"SELECT * FROM no_such_table_{i};\nSELECT 1/{i % 3 - 1 if i % 3 != 1 else 0};\n"
                f"INSERT INTO pgbench_branches VALUES ({i % 2 + 1}, 0, 'dup');\n" for i in range(60)))
            os.chmod(script, 0o644)
            log = data / "log" / "pg"
            for _ in range(40):
                if log.exists() and log.stat().st_size >= target * 0.7:
                    break
                run(*bench[:-1], "-c", "2", "-j", "2", "-t", "1000", "postgres",
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                run("psql", "-h", tmp, "-U", "postgres", "-q", "-f", str(script), "postgres",
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        finally:
            run(str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "stop", stdout=subprocess.DEVNULL)
        with open(out_text, "wb") as fh, open(data / "log" / "pg", "rb") as src:
            json_file(src, fh, stream="stderr", limit=target)
        with open(out_json, "wb") as fh, open(data / "log" / "pg.json", "rb") as src:
            json_file(src, fh, stream="stderr", limit=target)


# --- synthetic --------------------------------------------------------------------------------------
def salad(out: Path, target: int) -> None:
    rnd = random.Random(12)
    with open(out, "w") as fh:
        n = 0
        while n < target:
            line = " ".join(rnd.choice(SALAD_WORDS) for _ in range(rnd.randint(5, 20))) + "\n"
            fh.write(line)
            n += len(line)


def build(outdir: Path, names: Iterable[str], mb: int) -> dict[str, Path]:
    """Write each corpus once into ``outdir`` (kept if already there); returns name → file."""
    outdir.mkdir(parents=True, exist_ok=True)
    target = mb * 10**6
    got: dict[str, Path] = {}
    names = list(names)
    for name in names:
        path = outdir / f"{name}.log"
        if path.exists() and path.stat().st_size:
            got[name] = path
            continue
        t0 = time.perf_counter()
        try:
            if name == "nginx":
                nginx(path, target)
            elif name == "jvm":
                jvm(path, target)
            elif name in ("postgres", "postgres-json"):
                postgres(outdir / "postgres.log", outdir / "postgres-json.log", target)
            elif name == "loggen":
                loggen.write_log(str(path), target)
            elif name == "salad":
                salad(path, target)
            else:
                raise SystemExit(f"unknown corpus {name!r} (one of {', '.join(ALL)})")
        except Missing as exc:
            print(f"corpus {name}: skipped: {exc}", flush=True)
            continue
        except (OSError, subprocess.CalledProcessError) as exc:
            print(f"corpus {name}: skipped: {exc}", flush=True)
            continue
        got[name] = path
        print(f"corpus {name}: {path.stat().st_size / 1e6:.1f} MB in {time.perf_counter() - t0:.0f}s", flush=True)
    return got


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("outdir")
    ap.add_argument("--mb", type=int, default=24, help="about this many MB per corpus")
    ap.add_argument("--only", default=",".join(ALL))
    args = ap.parse_args()
    build(Path(args.outdir), args.only.split(","), args.mb)
    return 0


if __name__ == "__main__":
    sys.exit(main())
