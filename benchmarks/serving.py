"""Serving throughput and latency: requests per second and p50 / p95 latency of single-text requests
from 1, 8 and 32 concurrent clients, for the quickstart model on CPU, with request batching
(`inference.batch_size` inputs per model call) and without (`--max-batch 1`), measured side by side in
one run (rounds alternate between the two servers; medians over rounds).

    PYTHONPATH=. python benchmarks/serving.py [--export DIR] [--seconds 4] [--rounds 3]

Without --export it builds the quickstart model and data (`sft.synthetic`), runs the quickstart's
zero-shot experiment and exports it. Target: batched / unbatched throughput at 32 clients >= 3.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
CLIENTS = (1, 8, 32)
TEXTS = [
    "Great value, works exactly as described.",
    "Stopped working after two days, very disappointed.",
    "It is fine. Nothing special, does the job.",
    "The battery lasts forever and the screen is sharp.",
]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def quickstart_export(folder: Path) -> Path:
    """The quickstart's zero-shot run, exported (its model is the quickstart model)."""
    from sft.config import parse_config
    from sft.experiment.run import evaluate
    from sft.results.layout import Run
    from sft.serving.export import export_run
    from sft.synthetic import build_quickstart

    build_quickstart(folder / "quickstart")
    config = parse_config(
        {
            "dataset": {"path": str(folder / "quickstart/data"), "max_n_test": 16},
            "model": {"name": str(folder / "quickstart/model")},
            "prompting": {
                "instruction": "Classify the sentiment of the product review as negative, neutral or positive.",
                "input_columns": ["text"],
                "output_column": "label",
                "max_input_length": 64,
            },
            "inference": {"batch_size": 16},
        },
        "quickstart",
    )
    run = Run("zero-shot", 42, folder / "results")
    evaluate(config, run)
    return export_run(run.folder, folder / "export")


def start(export: Path, port: int, max_batch: int | None) -> subprocess.Popen:
    command = [sys.executable, "-m", "sft.cli", "serve", str(export), "--host", "127.0.0.1", "--port", str(port)]
    if max_batch is not None:
        command += ["--max-batch", str(max_batch)]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 180
    while time.time() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            time.sleep(0.5)
    process.kill()
    raise RuntimeError("the server did not start")


async def _client(host: str, port: int, body: bytes, end: float, latencies: list[float]) -> None:
    """One keep-alive connection posting `body` until `end`.

    A bare HTTP/1.1 client on asyncio streams: httpx spends several milliseconds of CPU per request,
    more than the server with a tiny model, so on a 2-core machine the load generator would measure
    itself. (The tests call the server with httpx.)"""
    reader, writer = await asyncio.open_connection(host, port)
    request = (
        f"POST /predict HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    try:
        while time.perf_counter() < end:
            began = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length = next(
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            await reader.readexactly(length)
            if status != 200:
                raise RuntimeError(f"the server answered {status}")
            latencies.append(time.perf_counter() - began)
    finally:
        writer.close()


async def load(port: int, clients: int, seconds: float) -> tuple[float, list[float]]:
    """(requests per second, latencies) of `clients` clients sending one text per request for `seconds`."""
    latencies: list[float] = []
    end = time.perf_counter() + seconds
    bodies = [json.dumps({"text": TEXTS[i % len(TEXTS)]}).encode() for i in range(clients)]
    started = time.perf_counter()
    await asyncio.gather(*(_client("127.0.0.1", port, body, end, latencies) for body in bodies))
    return len(latencies) / (time.perf_counter() - started), latencies


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--export", type=Path, help="An exported folder (default: build the quickstart's).")
    parser.add_argument("--seconds", type=float, default=4.0, help="Load duration per measurement.")
    parser.add_argument("--rounds", type=int, default=3, help="Alternating rounds per setting (medians).")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        export = args.export or quickstart_export(Path(tmp))
        servers = {"batched": None, "unbatched": 1}
        ports = {mode: free_port() for mode in servers}
        processes = {mode: start(export, ports[mode], max_batch) for mode, max_batch in servers.items()}
        try:
            results: dict[tuple[str, int], list[tuple[float, list[float]]]] = {}
            for url_mode in servers:  # warm up both
                asyncio.run(load(ports[url_mode], 4, 1.0))
            for _ in range(args.rounds):
                for clients in CLIENTS:
                    for mode in servers:
                        measured = asyncio.run(load(ports[mode], clients, args.seconds))
                        results.setdefault((mode, clients), []).append(measured)
        finally:
            for process in processes.values():
                process.terminate()
                process.wait(timeout=30)
    print(f"{'mode':<10} {'clients':>7} {'req/s':>8} {'p50 ms':>8} {'p95 ms':>8}")
    throughput = {}
    for (mode, clients), runs in sorted(results.items(), key=lambda item: (item[0][1], item[0][0])):
        rps = statistics.median(run[0] for run in runs)
        p50 = statistics.median(percentile(run[1], 0.5) for run in runs) * 1000
        p95 = statistics.median(percentile(run[1], 0.95) for run in runs) * 1000
        throughput[mode, clients] = rps
        print(f"{mode:<10} {clients:>7} {rps:>8.1f} {p50:>8.1f} {p95:>8.1f}")
    ratio = throughput["batched", 32] / throughput["unbatched", 32]
    print(f"batched / unbatched throughput at 32 clients: {ratio:.2f}x (target >= 3x)")


if __name__ == "__main__":
    main()
