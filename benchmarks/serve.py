"""Load on the HTTP API: N concurrent clients against ``/v1/rerank`` and M against ``/ask``, on loopback.

Starts ``bookqa serve`` on 127.0.0.1 and a free port with a temporary home (or drives ``--url``, which must
be a loopback address), uploads the bundled sample story for the ask clients, then runs every client for
``--seconds`` (each also stops after ``--max-requests``). Rerank clients send 20 short documents; ask
clients stream the answer (server-sent events) to the end. A client that gets 503 waits what
``Retry-After`` says (at most 5 s) and tries again. When the time is up no request is started, and the
ones in flight are given ``--grace`` seconds to finish. Prints per endpoint: requests, throughput,
p50/p95 latency, answered / 503 / other 4xx / 5xx / transport errors, and whether the run passed: zero
5xx other than 503, every request answered or refused with 503.

    .venv/bin/python benchmarks/serve.py [--seconds 60] [--rerank-clients 8] [--ask-clients 2] [--ask-k 50]
                                         [--queue N] [--url http://127.0.0.1:PORT [--book ID]]
"""
from __future__ import annotations

import argparse
import ipaddress
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "bookqa" / "data" / "sample" / "dying_detective.txt"
QUESTIONS = ["What was the signal for Inspector Morton to enter the room?", "What disease did Holmes pretend to have?",
             "Why did Holmes not let Watson touch him?", "Who was Culverton Smith?",
             "How long had Holmes gone without food?", "What was in the ivory box?"]
QUERIES = ["Who poisoned the nephew?", "What did the landlady tell Watson?", "Why was the gas turned low?",
           "Where did Watson hide?", "What is a coolie disease from Sumatra?"]
DOCUMENTS = [  # 20 short passages, a few on the queries' topics, most not
    "Mrs. Hudson came to Watson and said that Holmes was dying and would let no doctor near him.",
    "The nephew of Culverton Smith had died of a rare Eastern disease some months before.",
    "Holmes had the gas turned low so that Watson could not see his face clearly.",
    "Watson hid behind the head of the bed while Smith came into the room.",
    "A coolie disease from Sumatra was the illness Holmes claimed to have caught.",
    "The ivory box had a spring that drove a sharp point into the finger of whoever opened it.",
    "Inspector Morton waited in the street for the signal to come up.",
    "Holmes had taken neither food nor drink for three days.",
    "The fog lay thick over Baker Street on that November afternoon.",
    "Watson had been married for two years and kept his own practice.",
    "A cab rattled past the window and stopped at the corner.",
    "The landlady feared that Holmes would not live through the night.",
    "Smith was a planter from Sumatra who now lived in London.",
    "The fire had burned low and the room was cold.",
    "Holmes asked Watson to arrange the coins on the mantelpiece.",
    "There were half-crowns and shillings among the coins.",
    "The doctor in Watson could not bear to see a patient suffer.",
    "Smith laughed when he believed that Holmes was dying.",
    "Morton arrested Smith for the murder of his nephew.",
    "Holmes ate a biscuit and drank a glass of claret when it was over.",
]


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)  # seconds, answered requests
    first_token: list[float] = field(default_factory=list)  # ask: seconds to the first streamed token
    status: dict[str, int] = field(default_factory=dict)  # "200", "503", ..., "transport"
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, key: str, seconds: float | None = None, first: float | None = None) -> None:
        with self.lock:
            self.status[key] = self.status.get(key, 0) + 1
            if seconds is not None:
                self.latencies.append(seconds)
            if first is not None:
                self.first_token.append(first)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def check_loopback(url: str) -> None:
    host = urllib.parse.urlparse(url).hostname or ""
    try:
        ok = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        ok = False
    if not ok:
        sys.exit(f"serve.py drives loopback servers only (127.0.0.0/8, ::1, localhost), not {host!r}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(home: Path, log: Path, extra_env: dict[str, str]) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "BOOKQA_HOME": str(home),
           "BOOKQA_MODEL_CACHE": os.environ.get("BOOKQA_MODEL_CACHE", str(Path.home() / ".cache/bookqa/models")),
           **extra_env}
    proc = subprocess.Popen([sys.executable, "-m", "bookqa", "-q", "serve", "--port", str(port)], cwd=REPO, env=env,
                            stdout=open(log, "wb"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while True:
        if proc.poll() is not None:
            sys.exit(f"bookqa serve exited: {log.read_text(errors='replace')[-2000:]}")
        try:
            health = httpx.get(f"{url}/healthz", timeout=2).json()
            if health["reranker"]["loaded"]:
                return proc, url
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            proc.terminate()
            sys.exit("bookqa serve did not load its reranker within 300 s")
        time.sleep(0.5)


def upload_sample(url: str) -> str:
    with httpx.Client(base_url=url, timeout=60) as c:
        job = c.post("/v1/books", files={"file": (SAMPLE.name, SAMPLE.read_bytes())},
                     data={"title": "The Adventure of the Dying Detective"}).json()
        while (state := c.get(job["status_url"]).json())["state"] not in ("done", "failed"):
            time.sleep(1)
    if state["state"] != "done":
        sys.exit(f"ingesting the sample failed: {state['error']}")
    return state["book_id"]


def rerank_client(url: str, end: float, max_requests: int, tally: Tally, i: int) -> None:
    with httpx.Client(base_url=url, timeout=300) as c:
        for n in range(max_requests):
            if time.monotonic() >= end:
                return
            t0 = time.perf_counter()
            try:
                r = c.post("/v1/rerank", json={"model": "qr", "query": QUERIES[(i + n) % len(QUERIES)],
                                               "documents": DOCUMENTS, "top_n": 5})
            except httpx.HTTPError as exc:
                tally.add("transport")
                print(f"  rerank client {i}: {type(exc).__name__}: {exc}", file=sys.stderr)
                continue
            seconds = time.perf_counter() - t0
            tally.add(str(r.status_code), seconds if r.status_code == 200 else None)
            if r.status_code == 503:
                time.sleep(min(5.0, float(r.headers.get("retry-after", "1")), max(0.0, end - time.monotonic())))


def ask_client(url: str, book: str, end: float, max_requests: int, tally: Tally, i: int, k: int | None) -> None:
    with httpx.Client(base_url=url, timeout=900) as c:
        for n in range(max_requests):
            if time.monotonic() >= end:
                return
            body = {"question": QUESTIONS[(i + n) % len(QUESTIONS)], "stream": True}
            if k:
                body["k"] = k
            t0 = time.perf_counter()
            first, last_event, code = None, None, None
            try:
                with c.stream("POST", f"/v1/books/{book}/ask", json=body) as r:
                    code = r.status_code
                    if code == 200:
                        for line in r.iter_lines():
                            if line.startswith("event: "):
                                last_event = line[7:]
                                if last_event == "token" and first is None:
                                    first = time.perf_counter() - t0
                    else:
                        r.read()
            except httpx.HTTPError as exc:
                tally.add("transport")
                print(f"  ask client {i}: {type(exc).__name__}: {exc}", file=sys.stderr)
                continue
            seconds = time.perf_counter() - t0
            if code == 200 and last_event != "done":
                tally.add(f"stream-{last_event}")  # an error event (or a cut stream) instead of an answer
            else:
                tally.add(str(code), seconds if code == 200 else None, first)
            if code == 503:
                time.sleep(min(5.0, float(r.headers.get("retry-after", "1")), max(0.0, end - time.monotonic())))


def report(name: str, tally: Tally, wall: float) -> bool:
    st = tally.status
    answered = st.get("200", 0)
    refused = st.get("503", 0)
    server_errors = sum(v for k, v in st.items() if k.isdigit() and int(k) >= 500 and k != "503")
    client_errors = sum(v for k, v in st.items() if k.isdigit() and 400 <= int(k) < 500)
    other = sum(v for k, v in st.items() if not k.isdigit())
    total = sum(st.values())
    lat = tally.latencies
    line = (f"{name:<7} requests {total:>4}  answered {answered:>4}  503 {refused:>3}  other 4xx {client_errors}  "
            f"5xx {server_errors}  transport/stream errors {other}  throughput {answered / wall:.2f}/s  "
            f"p50 {percentile(lat, 50):.2f} s  p95 {percentile(lat, 95):.2f} s")
    if lat:
        line += f"  mean {statistics.fmean(lat):.2f} s"
    if tally.first_token:
        line += f"  first token p50 {percentile(tally.first_token, 50):.2f} s"
    print(line)
    return server_errors == 0 and client_errors == 0 and other == 0 and answered + refused == total


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0, help="how long clients start requests (default 60)")
    ap.add_argument("--rerank-clients", type=int, default=8)
    ap.add_argument("--ask-clients", type=int, default=2)
    ap.add_argument("--max-requests", type=int, default=1000, help="per client (default 1000)")
    ap.add_argument("--grace", type=float, default=600.0, help="seconds in-flight requests get after the end")
    ap.add_argument("--ask-k", type=int, default=None, help="first-stage candidates per question (default: "
                                                            "the server's BOOKQA_TOP_K)")
    ap.add_argument("--queue", type=int, default=None, help="the started server's queue bound (default: "
                                                            "BOOKQA_SERVE_QUEUE, 16); lower it to see 503s")
    ap.add_argument("--url", help="a running bookqa serve on loopback (default: start one)")
    ap.add_argument("--book", help="with --url: the book id the ask clients use (default: upload the sample)")
    args = ap.parse_args()
    if not 0 < args.seconds <= 3600 or not 0 <= args.rerank_clients <= 64 or not 0 <= args.ask_clients <= 16:
        sys.exit("keep --seconds in (0, 3600], --rerank-clients in 0..64, --ask-clients in 0..16")

    proc = None
    workdir = Path(tempfile.mkdtemp(prefix="bookqa-serve-bench-"))
    if args.url:
        check_loopback(args.url)
        url = args.url.rstrip("/")
    else:
        t0 = time.perf_counter()
        extra = {"BOOKQA_SERVE_QUEUE": str(args.queue)} if args.queue else {}
        proc, url = start_server(workdir / "home", workdir / "serve.log", extra)
        print(f"bookqa serve up and reranker loaded in {time.perf_counter() - t0:.1f} s ({url}; log {workdir / 'serve.log'})")
    try:
        health = httpx.get(f"{url}/healthz", timeout=5).json()
        book = args.book
        if args.ask_clients and not book:
            t0 = time.perf_counter()
            book = upload_sample(url)
            print(f"sample ingested through POST /v1/books in {time.perf_counter() - t0:.1f} s: {book}")
        print(f"CPU: {cpu_model()}, {os.cpu_count()} logical cores; reranker {health['reranker']['model']}, "
              f"generator {health['generator']['backend']}:{health['generator']['model']}, "
              f"queue limit {health['queue']['limit']}")
        print(f"{args.rerank_clients} rerank clients (20 documents, top_n 5) and {args.ask_clients} ask clients "
              f"(streamed, k={args.ask_k or 'server default'}) for {args.seconds:g} s")
        rerank, asked = Tally(), Tally()
        t_start = time.monotonic()
        end = t_start + args.seconds
        threads = [threading.Thread(target=rerank_client, args=(url, end, args.max_requests, rerank, i), daemon=True)
                   for i in range(args.rerank_clients)]
        threads += [threading.Thread(target=ask_client, args=(url, book, end, args.max_requests, asked, i, args.ask_k),
                                     daemon=True) for i in range(args.ask_clients)]
        for t in threads:
            t.start()
        deadline = end + args.grace
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
        wall = time.monotonic() - t_start
        unfinished = sum(t.is_alive() for t in threads)
        print(f"wall {wall:.1f} s (requests started for {args.seconds:g} s, then in-flight ones finished)")
        ok = report("rerank", rerank, wall) & report("ask", asked, wall)
        queue = httpx.get(f"{url}/healthz", timeout=5).json()["queue"]
        print(f"server queue: {json.dumps(queue)}")
        if unfinished:
            print(f"{unfinished} clients still waiting after the {args.grace:g} s grace")
            ok = False
        print("PASS: zero 5xx, every request answered or refused with 503" if ok else
              "FAIL: see the counts above")
        return 0 if ok else 1
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


if __name__ == "__main__":
    sys.exit(main())
