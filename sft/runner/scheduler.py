"""Running a grid: every experiment and seed in a fresh process, in parallel slots, resumable.

Slots are GPUs (`--gpus 0,1`: an experiment takes `resources.gpus` of them, pinned through
CUDA_VISIBLE_DEVICES) or CPU jobs (`--jobs N`). Scheduling is greedy in grid order: whenever slots
are free, the first waiting experiment that fits starts. Finished experiments are skipped
(`sft.runner.resume`), each running one is locked against other runners, and every outcome lands in the
run's `status.json` (state, exit code or signal, duration, log tail). A failure never stops the grid;
`--timeout` stops an experiment's whole process group, `--retries` runs a failed one again. The
first Ctrl-C (or SIGTERM) stops scheduling and terminates the running experiments; a rerun resumes.
Experiments with one training key and seed train once and share the adapter (`sft.runner.sharing`:
what waits for which training, and what a failed training fails). A `Feeder` (a grid's searches,
`sft.search.driver`) hands over runs while the grid runs: its trials, then the chosen configuration's
runs. The options and their checks are
`sft.runner.options`; each finished run's report statistics are prepared off this loop by
`sft.runner.statistics`.
"""

from __future__ import annotations

import signal
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

from rich.console import Console

from sft.config import ConfigError, ExperimentConfig
from sft.report.aggregate import ReportOptions, aggregate
from sft.results.files import DISK_FULL_EXIT, disk_full, disk_full_reason
from sft.results.layout import Run, results_folder_problems, write_config
from sft.results.logs import tail
from sft.results.states import RunState, StatusRecord
from sft.runner.cpu_share import available_cores, core_shares, user_set_threads
from sft.runner.executors import ExecutorContext, Handle, Job, get_executor
from sft.runner.interrupts import INTERRUPTED
from sft.runner.options import Options, check_options
from sft.runner.processes import describe_exit
from sft.runner.progress import SKIPPED, Progress, print_plan, print_trainings
from sft.runner.resume import RunLock, decide, locked_elsewhere, set_aside
from sft.runner.sharing import Trainings, training_plan
from sft.runner.statistics import StatisticsWorker
from sft.search.driver import Searches, chosen_config, searched

POLL_SECONDS = 0.05


@dataclass
class Active:
    """A running experiment: its handle, slots, lock and clocks."""

    run: Run
    config: ExperimentConfig
    handle: Handle
    lock: RunLock
    gpus: list[str]
    cpu_slots: list[int]
    attempt: int
    started: float = field(default_factory=time.time)
    launched: float | None = None  # when the process exists (a fork server may still be importing)
    terminated: float | None = None
    reason: str = ""


def slots_needed(config: ExperimentConfig, options: Options) -> int:
    """GPUs (with --gpus) or CPU jobs an experiment occupies."""
    if options.gpus is not None:
        return config.resources.gpus
    return min(options.jobs, config.resources.processes())


class Fed(Protocol):
    """A run a feeder hands over: its config, or why it fails without starting."""

    @property
    def run(self) -> Run: ...

    @property
    def config(self) -> ExperimentConfig: ...

    @property
    def failure(self) -> str | None: ...


class Feeder(Protocol):
    """Runs decided while the grid runs (`sft.search.driver.Searches`: a search's trials, then the chosen
    configuration's runs). The runner owns none of their logic: it asks for more whenever it polls (`fits`
    says how many runs of a config the free slots take), asks the feeder whether a run of its ended finished,
    and tells it how each ended for good."""

    experiments: set[str]  # the grid's experiments whose runs only the feeder hands over

    def more(self, fits: Callable[[ExperimentConfig], int]) -> Sequence[Fed]: ...

    def pending(self) -> bool: ...

    def finished(self, run: Run) -> bool | None:
        """Whether a run of the feeder's finished; None for a run it did not hand over."""

    def ended(self, run: Run, status: StatusRecord) -> None: ...


class GridRunner:
    """Schedules the runs of one grid over the slots, and records what happened to each."""

    def __init__(
        self,
        configs: dict[str, ExperimentConfig],
        results_path: Path,
        options: Options,
        console: Any,
        feeder: Feeder | None = None,
    ):
        self.configs, self.results_path, self.options, self.console = configs, results_path, options, console
        self.feeder = feeder
        self.fed: dict[Run, ExperimentConfig] = {}  # runs the feeder handed over, with their configs
        deferred = feeder.experiments if feeder is not None else set()
        self.waiting: deque[tuple[Run, int]] = deque(
            (Run(name, seed, results_path, options.share_training), 1)
            for name in configs
            if name not in deferred
            for seed in options.seeds
        )
        self.trainings = Trainings(configs, [run for run, _ in self.waiting])
        self.total = len(self.waiting)
        self.free_gpus = list(options.gpus or [])
        self.free_cpus = list(range(options.jobs))  # CPU slot numbers
        # each slot's share of the cores (a GPU slot's is that of its position in --gpus)
        self.shares = core_shares(available_cores(), len(options.gpus) if options.gpus else options.jobs)
        self.active: list[Active] = []
        self.outcomes: dict[Run, StatusRecord] = {}
        self.locked: list[Run] = []
        self.stopping = False
        # started by `run`
        self.executor: Any = None
        self.statistics: StatisticsWorker
        self.progress: Progress

    # --- the loop --------------------------------------------------------------------------------------------------

    def run(self) -> int:
        slots = len(self.free_gpus) if self.options.gpus is not None else self.options.jobs
        context = ExecutorContext(self.results_path, self.options.timeout)
        self.executor = get_executor(self.options.executor, context, self.options.executor_options)
        self.statistics = StatisticsWorker(self.results_path)
        previous = {signum: signal.signal(signum, self._on_signal) for signum in (signal.SIGINT, signal.SIGTERM)}
        try:
            self.progress = Progress(self.console, self.total, slots)
            with self.progress:
                while self.waiting or self.active or self._feeding():
                    if not self.stopping:
                        self._feed()
                        self._start_what_fits()
                    self._poll()
                    if self.stopping and not self.active:
                        break
                    self.progress.tick()
                    time.sleep(POLL_SECONDS)
        except BaseException:
            self.statistics.close(wait=False)
            raise
        finally:
            for active in self.active:  # only after an unexpected error: leave no experiment behind
                active.handle.signal(signal.SIGKILL)
            self.executor.close()
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        return self._summary()

    def _on_signal(self, signum: int, frame: Any) -> None:
        if self.stopping:  # second interrupt: no more grace
            for active in self.active:
                active.handle.signal(signal.SIGKILL)
            return
        self.stopping = True
        self.console.print("[yellow]Interrupted: stopping the running experiments; rerun to resume.[/yellow]")
        for active in self.active:
            active.reason = "interrupted"
            self._terminate(active)

    # --- runs handed over while the grid runs (sft.search) ----------------------------------------------------------

    def _feeding(self) -> bool:
        return self.feeder is not None and not self.stopping and self.feeder.pending()

    def _config(self, run: Run) -> ExperimentConfig:
        return self.fed.get(run) or self.configs[run.name]

    def _fits(self, config: ExperimentConfig) -> int:
        """How many runs of `config` the slots left free by the waiting runs take now."""
        free = len(self.free_gpus) if self.options.gpus is not None else len(self.free_cpus)
        free -= sum(slots_needed(self._config(run), self.options) for run, _ in self.waiting)
        return max(0, free // max(1, slots_needed(config, self.options)))

    def _feed(self) -> None:
        if self.feeder is None:
            return
        for item in self.feeder.more(self._fits):
            self.fed[item.run] = item.config
            self.total += 1
            self.progress.total += 1
            if item.failure is not None:
                self._fail_unstarted(item.run, item.config, item.failure)
            else:
                self.waiting.append((item.run, 1))

    # --- starting ----------------------------------------------------------------------------------------------------

    def _start_what_fits(self) -> None:
        for item in list(self.waiting):
            if self.stopping:  # an interrupt during this pass: start nothing more
                return
            run, attempt = item
            config = self._config(run)
            failure = self.trainings.failure(run)
            if failure is not None:
                self.waiting.remove(item)
                self._fail_unstarted(run, config, failure)
                continue
            if self.trainings.waits(run, [active.run for active in self.active]):
                continue  # another slot trains its adapter; it starts once the adapter is published
            need = slots_needed(config, self.options)
            if self.options.gpus is not None:
                if need > len(self.free_gpus):
                    continue
            elif need > len(self.free_cpus):
                continue
            self.waiting.remove(item)
            self._claim(run, config, attempt, need)

    def _claim(self, run: Run, config: ExperimentConfig, attempt: int, need: int) -> None:
        lock = RunLock(run.folder)
        if not lock.acquire():
            self.locked.append(run)
            self.progress.skipped(run, "running in another runner")
            return
        for partial in run.folder.glob(".*.tmp"):  # left by a killed writer (a runner killed while it recorded
            partial.unlink(missing_ok=True)  # the run's status, too): we hold the lock, nobody writes there now
        decision = decide(run, config.config_hash(), self.options.force and attempt == 1)
        if not decision.run:
            self._mark_done_if_unrecorded(run, config)
            lock.release()
            self.progress.skipped(run, decision.reason)
            return
        if decision.set_aside:
            self.progress.set_aside(run, decision.reason, set_aside(run.folder))
        try:
            config_file = write_config(config, run)
            with open(run.folder / "run.log", "a", encoding="utf-8") as log:
                stamp = time.strftime("%Y-%m-%d %H:%M:%S")
                log.write(f"\n=== {stamp} run-experiment {run.name} seed {run.seed} (attempt {attempt})\n")
        except OSError as error:  # --- faults: a full disk fails this run, recorded where it can be, not the grid
            lock.release()
            if not disk_full(error):
                raise
            self._record_unstarted(run, config, disk_full_reason(run.folder))
            return
        gpus: list[str] = []
        if self.options.gpus is not None:
            gpus, self.free_gpus = self.free_gpus[:need], self.free_gpus[need:]
        cpu_slots: list[int] = []
        if self.options.gpus is None:
            cpu_slots, self.free_cpus = self.free_cpus[:need], self.free_cpus[need:]
        job = Job(run, config, config_file, run.folder / "run.log", gpus if self.options.gpus else None)
        job = self._with_cores(job, cpu_slots or [(self.options.gpus or []).index(gpu) for gpu in gpus])
        handle = self.executor.start(job)
        active = Active(run, config, handle, lock, gpus, cpu_slots, attempt)
        self.active.append(active)
        if self.stopping:  # --- faults: interrupted while this one was being started, after the stop reached the others
            active.reason = "interrupted"
            self._terminate(active)
        self._write_status(active, RunState.RUNNING, None)
        detail = f" on GPU {','.join(gpus)}" if gpus else ""
        self.progress.started(run, detail + (f" (attempt {attempt})" if attempt > 1 else ""))

    def _with_cores(self, job: Job, slots: list[int]) -> Job:
        """`job` pinned to its slots' share of the cores, one intra-op thread per core and process. Ray and
        Slurm jobs run elsewhere: they take the thread count of the CPUs they are given instead."""
        cores = sorted({core for slot in slots for core in self.shares[slot]})
        if not cores or user_set_threads():
            return job
        threads = max(1, len(cores) // job.config.resources.processes(len(job.gpus or [])))
        return replace(job, cores=cores, threads=threads)

    def _poll(self) -> None:
        now = time.time()
        for active in list(self.active):
            code = active.handle.poll()
            if active.launched is None and active.handle.started():
                active.launched = now
                if code is None:
                    self._write_status(active, RunState.RUNNING, None)
            if code is None:
                timeout = self.options.timeout
                if timeout and active.launched and active.terminated is None and now - active.launched > timeout:
                    active.reason = f"timeout after {timeout:g} s"
                    self._terminate(active)
                elif active.terminated and now - active.terminated > self.options.grace_seconds:
                    active.handle.signal(signal.SIGKILL)
                continue
            self._finish(active, code)

    def _terminate(self, active: Active) -> None:
        active.terminated = time.time()
        active.handle.signal(signal.SIGTERM)

    def _finish(self, active: Active, code: int) -> None:
        # Sweep what the experiment left in its process group (e.g. data loader workers). The group id
        # cannot be reused while any member lives, so this reaches nothing else.
        active.handle.signal(signal.SIGKILL)
        self.active.remove(active)
        self.free_gpus += active.gpus
        self.free_cpus = sorted(self.free_cpus + active.cpu_slots)
        run = active.run
        owned = self.feeder.finished(run) if self.feeder is not None else None  # a search's trial: no test
        finished = decide(run, active.config.config_hash()).run is False if owned is None else owned
        if code == 0 and finished:
            state, reason = RunState.DONE, ""
        elif active.reason == "interrupted":
            state, reason = RunState.INTERRUPTED, "interrupted"
        else:
            state = RunState.FAILED
            reason = active.reason or active.handle.end_reason()
            if not reason and code == DISK_FULL_EXIT:  # --- faults: the experiment ran out of space
                reason = disk_full_reason(run.folder)
            reason = reason or (describe_exit(code) if code != 0 else "exit code 0 but no results.json")
        status = self._write_status(active, state, code, reason)
        active.lock.release()
        self.outcomes[run] = status
        if state == RunState.FAILED and active.attempt <= self.options.retries and not self.stopping:
            self.waiting.appendleft((run, active.attempt + 1))
            self.progress.retrying(run, reason)
            return
        if self.feeder is not None:
            self.feeder.ended(run, status)
        if state == RunState.FAILED:
            self.trainings.ended(run, reason)
        if state == RunState.DONE and owned is None:
            self.statistics.submit(run)  # prepared by the worker while the loop goes on
        self.progress.finished(run, state.value, time.time() - active.started, reason)

    def _fail_unstarted(self, run: Run, config: ExperimentConfig, reason: str) -> None:
        """Record as failed, without starting it, a run whose training failed (unless it is finished
        already or another runner runs it)."""
        lock = RunLock(run.folder)
        if not lock.acquire():
            self.locked.append(run)
            self.progress.skipped(run, "running in another runner")
            return
        try:
            decision = decide(run, config.config_hash(), self.options.force)
            if not decision.run:
                self._mark_done_if_unrecorded(run, config)
                self.progress.skipped(run, decision.reason)
                return
            if decision.set_aside:
                set_aside(run.folder)
            self._record_unstarted(run, config, reason)
        finally:
            lock.release()

    def _record_unstarted(self, run: Run, config: ExperimentConfig, reason: str) -> None:
        """A run failed without starting: its log line and status.json (where the disk lets them be
        written), its outcome and its line in the summary."""
        log = run.folder / "run.log"
        now = time.time()
        try:
            with open(log, "a", encoding="utf-8") as handle:
                handle.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} not run: {reason}\n")
        except OSError as error:
            self._unrecorded(run, log, error)
        status = StatusRecord(
            experiment=run.name, seed=run.seed, state=RunState.FAILED.value, reason=reason,
            exit_code=None, signal=None, duration_seconds=0.0, attempt=0, pid=None,
            executor=self.options.executor, gpus=None, started_at=None, launched_at=None,
            finished_at=_iso(now), config_hash=config.config_hash(), log=str(log), log_tail=tail(log),
        )  # fmt: skip
        self._write_record(run, status)
        self.outcomes[run] = status
        self.progress.finished(run, RunState.FAILED.value, 0.0, reason)

    def _write_record(self, run: Run, status: StatusRecord) -> None:
        """Write status.json atomically; a full disk leaves the previous one whole and is reported (the
        outcome is kept in the summary), anything else is raised."""
        try:
            status.write(run.folder / StatusRecord.FILE)
        except OSError as error:
            self._unrecorded(run, run.folder / StatusRecord.FILE, error)

    def _unrecorded(self, run: Run, path: Path, error: OSError) -> None:
        if not disk_full(error):
            raise error
        self.console.print(
            f"[yellow]{run.name} seed {run.seed}: {path.name} not written: {disk_full_reason(path)}[/yellow]",
            highlight=False,
        )

    # --- records ---------------------------------------------------------------------------------------------------

    def _write_status(self, active: Active, state: RunState, code: int | None, reason: str = "") -> StatusRecord:
        run = active.run
        log = run.folder / "run.log"
        # the executor's own fields (StatusRecord declares each), and the log's end for a run ended without results
        extra: dict[str, Any] = dict(active.handle.details())
        if state not in (RunState.RUNNING, RunState.DONE):
            extra["log_tail"] = tail(log)
        status = StatusRecord(
            experiment=run.name,
            seed=run.seed,
            state=state.value,
            reason=reason,
            exit_code=code,
            signal=signal.Signals(-code).name if code is not None and code < 0 and -code in _SIGNALS else None,
            duration_seconds=round(time.time() - active.started, 3),
            attempt=active.attempt,
            pid=active.handle.pid,
            executor=self.options.executor,
            gpus=active.gpus or None,
            started_at=_iso(active.started),
            launched_at=_iso(active.launched) if active.launched else None,  # after any queueing
            finished_at=_iso(time.time()) if state != RunState.RUNNING else None,
            config_hash=active.config.config_hash(),
            log=str(log),
            **extra,
        )
        self._write_record(run, status)
        return status

    def _mark_done_if_unrecorded(self, run: Run, config: ExperimentConfig) -> None:
        """A runner killed between the child's results.json and its own status.json left 'running' behind."""
        status_file = run.folder / StatusRecord.FILE
        try:
            if StatusRecord.read(status_file).run_state == RunState.DONE:
                return
        except (OSError, ValueError):
            pass
        found = StatusRecord(
            experiment=run.name,
            seed=run.seed,
            state=RunState.DONE.value,
            reason="found finished on resume",
            config_hash=config.config_hash(),
            log=str(run.folder / "run.log"),
        )
        self._write_record(run, found)

    def _summary(self) -> int:
        self.statistics.close()  # every finished run's statistics prepared before the report reads them
        # The grid's runs, so that the report lists the ones an interruption left without a folder.
        expected: list[tuple[str, int | None]] = [(name, seed) for name in self.configs for seed in self.options.seeds]
        report_failed = False
        try:
            _, report = aggregate(self.results_path, ReportOptions(expected=expected))
            markdown = str(report)
        except OSError as error:  # --- faults: the report on a full disk: its earlier files stay whole
            if not disk_full(error):
                raise
            report_failed, markdown = True, f"not written, {disk_full_reason(self.results_path)}"
        states = [status.state for status in self.outcomes.values()]
        failed = [status for status in self.outcomes.values() if status.run_state == RunState.FAILED]
        done = states.count(RunState.DONE.value)
        skipped = self.progress.counts[SKIPPED]
        interrupted = states.count(RunState.INTERRUPTED.value)
        self.console.print(
            f"{done} done, {len(failed)} failed, {interrupted} interrupted, {skipped} skipped. Report: {markdown}"
        )
        for status in failed:
            self.console.print(
                f"  failed: {status.experiment} seed {status.seed} ({status.reason}), see {status.log}",
                highlight=False,
            )
        for run in self.locked:
            self.console.print(f"  not run here: {run.name} seed {run.seed} is being run by another runner")
        if self.stopping:
            return INTERRUPTED
        return 1 if failed or report_failed else 0


_SIGNALS = {member.value for member in signal.Signals}


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).isoformat(timespec="milliseconds")


def searched_configs(
    configs: dict[str, ExperimentConfig], results_path: Path
) -> tuple[dict[str, ExperimentConfig], dict[str, str]]:
    """Each experiment's config as its runs would use it (a finished search's chosen values set), and for the
    searched experiments whose runs still wait for their search, what they wait for."""
    effective, waiting = dict(configs), {}
    for name, config in configs.items():
        if config.search is not None:
            found, waits = chosen_config(name, config, results_path)
            effective[name] = found or config
            if found is None:
                waiting[name] = waits
    return effective, waiting


def plan(configs: dict[str, ExperimentConfig], results_path: Path, options: Options) -> list[tuple[Run, str, str]]:
    """(run, 'run' | 'skip', why) for every experiment/seed, touching nothing."""
    effective, waiting = searched_configs(configs, results_path)
    rows = []
    for name, config in effective.items():
        for seed in options.seeds:
            run = Run(name, seed, results_path, options.share_training)
            if name in waiting:
                rows.append((run, "search", waiting[name]))
                continue
            if locked_elsewhere(run.folder):
                rows.append((run, "skip", "running in another runner"))
                continue
            decision = decide(run, config.config_hash(), options.force)
            rows.append((run, "run" if decision.run else "skip", decision.reason))
    return rows


def run_experiments(
    configs: dict[str, ExperimentConfig], results_path: str | Path, options: Options | Sequence[int], console=None
) -> int:
    """Run every (experiment, seed) of a grid, aggregate the results, return the exit code:
    0 all finished, 1 some failed, 130 interrupted."""
    if not isinstance(options, Options):  # a list of seeds
        options = Options(seeds=list(options))
    console = console or Console(stderr=True)
    results_path = Path(results_path)
    check_options(configs, options)
    problems = [] if options.dry_run else results_folder_problems(results_path)
    if problems:
        raise ConfigError(problems)
    if options.dry_run:
        rows = plan(configs, results_path, options)
        effective = searched_configs(configs, results_path)[0]
        trainings, roles = training_plan(effective, rows) if options.share_training else ([], {})
        print_plan(console, rows, roles)
        print_trainings(console, trainings)
        return 0
    results_path.mkdir(parents=True, exist_ok=True)
    runs = len(configs) * len(options.seeds)
    slots = f"GPUs {','.join(options.gpus)}" if options.gpus is not None else f"{options.jobs} job(s)"
    console.print(
        f"Running {runs} run(s) ({len(configs)} experiment(s) x {len(options.seeds)} seed(s)) into {results_path} "
        f"with {slots}, executor {options.executor}"
        + ("" if options.share_training else ", every run training its own adapter")
    )
    feeder = Searches(configs, results_path, list(options.seeds), options.share_training) if searched(configs) else None
    if feeder is not None:
        console.print(f"Searching hyperparameters on validation first for {', '.join(sorted(feeder.experiments))}")
    return GridRunner(configs, results_path, options, console, feeder).run()
