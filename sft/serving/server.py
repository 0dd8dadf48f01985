"""`serve EXPORTED`: an HTTP JSON service over an exported model (FastAPI on uvicorn).

    GET  /health    {"status": "ok", "task_type", "labels", "input_columns", "batch_size", "source"}
    POST /predict   a request of `sft.serving.payload` -> {"predictions": [...]}

Concurrent requests are batched: each request's inputs join a queue, and one worker takes everything
queued (up to `max_batch` inputs, waiting at most `max_wait` seconds for more) into one model call on
its own thread, so the event loop keeps accepting requests while the model runs. (FastAPI is imported
at module level: it reads the routes' annotations from this module; the CLI imports it lazily.) A request larger
than `max_batch` runs as one call of its own (the model still takes `inference.batch_size` inputs per
forward). Bad requests get a 4xx answer with a message (`{"error": ...}`); the export is checked before
the port opens, so a broken export never starts a server.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from sft.serving.api import ServedModel, load_export
from sft.serving.payload import Example, InputError, Limits, examples_of, inputs_of, parse_json, response

log = logging.getLogger(__name__)

# How long the batcher waits for more requests once it has one (seconds): short against a model call.
MAX_WAIT = 0.002

Job = tuple[list[Example], "asyncio.Future[list[dict[str, Any]]]"]


class Batcher:
    """Groups the inputs of concurrent requests into model calls of up to `max_batch` inputs."""

    def __init__(self, predict: Callable[[list[Example]], list[dict[str, Any]]], max_batch: int, max_wait: float):
        self.predict = predict
        self.max_batch = max_batch
        self.max_wait = max_wait
        self.queue: asyncio.Queue[Job] = asyncio.Queue()
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sft-model")
        self.calls = 0  # model calls made, for /health and the tests

    async def submit(self, examples: list[Example]) -> list[dict[str, Any]]:
        future: asyncio.Future[list[dict[str, Any]]] = asyncio.get_running_loop().create_future()
        await self.queue.put((examples, future))
        return await future

    async def _next_batch(self, carried: Job | None) -> tuple[list[Job], Job | None]:
        """Jobs for one model call, and a job that did not fit (carried to the next call)."""
        loop = asyncio.get_running_loop()
        jobs = [carried if carried is not None else await self.queue.get()]
        count = len(jobs[0][0])
        deadline = loop.time() + self.max_wait
        while count < self.max_batch:
            try:
                job = self.queue.get_nowait()
            except asyncio.QueueEmpty:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    job = await asyncio.wait_for(self.queue.get(), remaining)
                except TimeoutError:
                    break
            if count + len(job[0]) > self.max_batch:
                return jobs, job
            jobs.append(job)
            count += len(job[0])
        return jobs, None

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        carried: Job | None = None
        while True:
            jobs, carried = await self._next_batch(carried)
            examples = [example for job_examples, _ in jobs for example in job_examples]
            try:
                predictions = await loop.run_in_executor(self.executor, self.predict, examples)
            except Exception as error:  # the model failed: every waiting request gets the error
                log.exception("Prediction failed")
                for _, future in jobs:
                    if not future.done():
                        future.set_exception(error)
                continue
            self.calls += 1
            start = 0
            for job_examples, future in jobs:
                if not future.done():  # a client that went away leaves a cancelled future
                    future.set_result(predictions[start : start + len(job_examples)])
                start += len(job_examples)


async def _read_body(request: Request, limit: int) -> bytes:
    """The request body, refused (413) as soon as it grows past `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise InputError(f"the request has {declared} bytes; the limit is {limit}", 413)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise InputError(f"the request has more than {limit} bytes; the limit is {limit}", 413)
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(model: ServedModel, max_batch: int | None = None, limits: Limits | None = None) -> FastAPI:
    """The service of `model`; `max_batch` inputs per model call (default `inference.batch_size`)."""
    limits = limits or Limits()
    batcher_holder: dict[str, Batcher] = {}

    def predict(examples: list[Example]) -> list[dict[str, Any]]:
        return model.predict(examples)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        batcher = Batcher(predict, max_batch or model.batch_size, MAX_WAIT)
        batcher_holder["batcher"] = batcher
        worker = asyncio.create_task(batcher.run())
        yield
        worker.cancel()
        batcher.executor.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(title="sft model", lifespan=lifespan)

    @app.exception_handler(InputError)
    async def refused(request: Request, error: InputError) -> JSONResponse:
        return JSONResponse({"error": str(error)}, status_code=error.status)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        batcher = batcher_holder["batcher"]
        return {"status": "ok", **model.describe(), "max_batch": batcher.max_batch, "model_calls": batcher.calls}

    @app.post("/predict")
    async def predict_route(request: Request) -> dict[str, Any]:
        body = parse_json(await _read_body(request, limits.max_bytes), limits)
        examples = examples_of(inputs_of(body), model.input_columns, limits)
        return response(await batcher_holder["batcher"].submit(examples))

    return app


def serve(folder: Path, host: str, port: int, max_batch: int | None = None, limits: Limits | None = None) -> None:
    """Check and load the export, then serve it until interrupted."""
    model = load_export(folder)
    log.info("Serving %s on http://%s:%d (POST /predict, GET /health)", folder, host, port)
    uvicorn.run(create_app(model, max_batch, limits), host=host, port=port, log_level="warning")
