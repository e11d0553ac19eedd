"""``hitl serve``: the long-running service that wires the parts together.

It runs the intake consumer (a thread: redis-py is synchronous), the webhook deliverer, the
channels' dispatcher (:class:`~hitl.bot.dispatch.Dispatcher`: cards, updates and notices for every
channel in ``service.channels``), and an aiohttp server on ``--port`` / ``$PORT`` (default 3000)
with ``/healthz``; the Slack, Teams and web-inbox adapters mount their routes on the same
application::

    service = Service(Settings.from_env())
    asyncio.run(service.serve(port=3000))
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import queue
import signal
import threading
from collections.abc import Callable
from typing import Any, cast

from aiohttp import web

from hitl.bot.channel import Channel
from hitl.bot.dispatch import Dispatcher, DispatchSettings
from hitl.config import Settings
from hitl.errors import ConfigError, HitlError
from hitl.handlers import Authority, Decider, OpenAuthority
from hitl.handlers.canaries import CanarySender
from hitl.handlers.metrics import governance_of
from hitl.models import ApprovalRequest, RequestRecord, Verdict
from hitl.queue.audit import AuditEvent
from hitl.queue.checkpoints import Checkpointer
from hitl.queue.connection import open_store
from hitl.queue.digest import Digests
from hitl.queue.intake import IntakeConsumer
from hitl.queue.scheduler import Scheduler, SchedulerConfig, StreamSink
from hitl.queue.store import Store
from hitl.queue.webhooks import WebhookDeliverer

__all__ = ["Service", "load_authority"]

log = logging.getLogger("hitl.service")


def load_authority(settings: Settings) -> tuple[Authority, Any]:
    """The active policy (``--policy``, ``HITL_POLICY``, else the shipped one) and its holder."""
    from hitl.policies import PolicyHolder

    holder = PolicyHolder(settings.policy_path, env=settings.environment)
    return holder.current, holder


class _HeldPolicy:
    """An Authority that always asks the holder's current policy (so reloads take effect)."""

    def __init__(self, holder: Any) -> None:
        self._holder = holder

    def __getattr__(self, name: str) -> Any:
        return getattr(self._holder.current, name)


def _seconds(name: str, default: float) -> float:
    raw = os.environ.get(name, "")
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be seconds, got {raw!r}") from None
    if not 1 <= value <= 86400:
        raise ConfigError(f"{name} must be 1 to 86400 seconds, got {raw!r}")
    return value


_frozen = False


def _freeze_startup_objects() -> None:
    """Once per process: move what exists at start-up (modules, the compiled policy, pydantic
    schemas: tens of thousands of objects that live as long as the process) out of the garbage
    collector's reach, so its collections no longer rescan them: in a 5,000-request intake run
    they took ~190 ms of ~1,400 (gc.callbacks timing), ~70 ms once frozen."""
    global _frozen
    if not _frozen:
        _frozen = True
        gc.collect()
        gc.freeze()


class Service:
    def __init__(
        self,
        settings: Settings,
        *,
        store: Store | None = None,
        authority: Authority | None = None,
        consumers: int = 1,
        dispatch: DispatchSettings | None = None,
    ) -> None:
        self.settings = settings
        # Refuse to start without a signing key: nothing is signed with an improvised one.
        self.keyring = settings.signing_keys() if store is None else store.require_signer()
        self.store = store or open_store(settings)
        self.holder: Any = None
        if authority is None:
            try:
                _, self.holder = load_authority(settings)
                authority = cast(Authority, _HeldPolicy(self.holder))
            except ImportError:  # pragma: no cover - the policy package is always shipped
                authority = OpenAuthority()
        assert authority is not None
        self.authority: Authority = authority
        self.decider = Decider(self.store, self.authority)
        config = SchedulerConfig.from_env()
        self.notifications = StreamSink(self.store)
        self.digests = Digests(self.store, self.notifications, config)
        self.scheduler = Scheduler(self.store, config, folder=self.digests)
        self.channels: list[Channel] = []
        """The chat channels cards go to (Slack, Teams): add them with :meth:`add_channel`."""
        self.dispatcher = Dispatcher(
            self.store,
            self.channels,
            people=self.authority,
            digests=self.digests,
            settings=dispatch,
            clock=self.store.clock,  # one time for the records and for who is on call
        )
        self.consumers = [
            IntakeConsumer(
                self.store,
                self.classify,
                group=settings.consumer_group,
                claim_idle_ms=settings.claim_idle_ms,
                on_stored=self._on_stored,
                on_cancel=self._on_cancel,
            )
            for _ in range(consumers)
        ]
        self.canaries = CanarySender(
            self.store, self.authority, lambda: governance_of(self.authority)
        )
        """Sends the policy's canary requests among the stored ones (``governance.canary``)."""
        self.governance_every_s = _seconds("HITL_GOVERNANCE_S", 600.0)
        """How often the service checks for rubber-stamping reviewers."""
        self.webhooks = WebhookDeliverer(self.store)
        self.checkpointer = Checkpointer(self.store, self.keyring, settings.anchor())
        self.stop_event = threading.Event()
        self.app = web.Application()
        self.app.router.add_get("/healthz", self.healthz)
        self.app.on_startup.append(self._start_channels)
        self.app.on_cleanup.append(self._stop_channels)
        self._threads: list[threading.Thread] = []
        self._intake_threads: list[threading.Thread | None] = [None] * len(self.consumers)
        self.supervise_every_s = 1.0
        """How often the supervisor checks the intake threads (and restarts one that ended)."""
        self.intake_restarts = 0
        self.port: int | None = None
        """The port ``serve()`` bound (``None`` until it listens)."""
        self._dispatch: queue.Queue[list[RequestRecord] | None] | None = None
        self.dispatched = 0
        """Stored records folded and handed to the channels so far (threaded intake)."""

    # -- wiring --------------------------------------------------------------------------------

    def classify(self, request: ApprovalRequest) -> Verdict:
        return self.authority.evaluate(request)

    def add_channel(self, channel: Channel) -> None:
        """Post cards in ``channel`` too (before the aiohttp app starts)."""
        self.channels.append(channel)

    async def _start_channels(self, _: web.Application) -> None:
        await self.dispatcher.start()

    async def _stop_channels(self, _: web.Application) -> None:
        await self.dispatcher.stop()

    def _on_stored(self, records: list[RequestRecord]) -> None:
        """Newly stored records: hand them to the dispatcher thread when the intake runs
        threaded (so digest folding and card posting never slow intake down), else act inline."""
        if self._dispatch is not None:
            self._dispatch.put(records)
        else:
            self._dispatch_now(records)

    def _dispatcher(self) -> None:
        """Drain stored records in batches: fold digests, then hand them to the channels."""
        assert self._dispatch is not None
        while True:
            first = self._dispatch.get()
            if first is None:
                return
            batch, done = list(first), False
            while len(batch) < 2000:
                try:
                    more = self._dispatch.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    done = True
                    break
                batch.extend(more)
            self._dispatch_now(batch)
            self.dispatched += len(batch)
            if done:
                return

    def _dispatch_now(self, records: list[RequestRecord]) -> None:
        try:
            cards = self.scheduler.on_stored(records)  # arms the sweep; folds digests and bursts
        except Exception:  # folding must not stop intake; the digests' tick catches up
            log.exception("scheduling failed")
            cards = list(records)
        try:
            self.dispatcher.on_stored(cards)  # thread-safe; posts on the serving event loop
        except Exception:  # a channel's failure must not stop intake; the sweep catches up
            log.exception("handing stored records to the channels failed")
        try:
            self.canaries.after_stored(records)
        except Exception:  # a canary's failure must not stop intake
            log.exception("sending a canary request failed")

    def _on_cancel(self, request_id: str, agent_id: str | None, reason: str) -> None:
        self.decider.cancel_by_agent(request_id, agent_id, reason)

    def reload_policy(self) -> tuple[bool, str]:
        """Re-read the policy file; keep the last good one on error. Audited either way."""
        if self.holder is None:
            return False, "no policy file in use"
        ok, message = self.holder.reload()
        self._audit_reload(ok, message)
        return ok, message

    async def _watch_policy(self, stop: asyncio.Event, every_s: float = 2.0) -> None:
        """Reload the policy when its file changes (SIGHUP does the same on demand)."""
        while not stop.is_set():
            await asyncio.sleep(every_s)
            if self.holder is None:
                continue
            try:
                changed = await asyncio.to_thread(self.holder.reload_if_changed)
            except Exception:  # a watcher bug must not stop the service
                log.exception("policy watch failed")
                continue
            if changed is not None:
                ok, message = changed
                await asyncio.to_thread(self._audit_reload, ok, message)

    async def _watch_reviewers(self, stop: asyncio.Event) -> None:
        """Every ``HITL_GOVERNANCE_S`` (600) seconds: report reviewers flagged as possible
        rubber-stampers to the policy's compliance destination (once a day each)."""
        from hitl.handlers.metrics import report_rubber_stamps

        every_s = self.governance_every_s
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=every_s)
            if stop.is_set():
                return
            governance = governance_of(self.authority)
            try:
                await asyncio.to_thread(
                    report_rubber_stamps, self.store, governance, self.notifications
                )
            except Exception:  # a metrics failure must not stop the service
                log.exception("rubber-stamp check failed")

    def _audit_reload(self, ok: bool, message: str) -> None:
        event = AuditEvent(
            "policy_reloaded" if ok else "policy_reload_failed",
            None,
            "operator",
            {"message": message, "source": str(getattr(self.holder.current, "source", ""))},
            self.authority.version,
        )
        self.store.append_events([event])
        (log.info if ok else log.error)("policy reload: %s", message)

    # -- HTTP ----------------------------------------------------------------------------------

    async def healthz(self, request: web.Request) -> web.Response:
        try:
            pending = await asyncio.to_thread(self.store.pending_count)
        except HitlError as exc:
            return web.json_response({"status": "unavailable", "error": str(exc)}, status=503)
        stats, intake_error = self._intake_health()
        body: dict[str, Any] = {
            "status": "ok",
            "pending": pending,
            "policy_version": self.authority.version,
            "intake": stats,
            "intake_restarts": self.intake_restarts,
            "dispatch_backlog": self._dispatch.qsize() if self._dispatch is not None else 0,
        }
        if intake_error:  # requests may be piling up unread: someone must look
            body["status"] = "degraded"
            body["intake_error"] = intake_error
        error = getattr(self.holder, "last_error", None) if self.holder is not None else None
        if error:  # still serving the last good policy, but someone must fix the file
            body["status"] = "degraded"
            body["policy_error"] = str(error)
        if self.checkpointer.last_error:  # the chain no longer matches its anchor
            body["status"] = "degraded"
            body["audit_error"] = self.checkpointer.last_error
        return web.json_response(body)

    # -- running -------------------------------------------------------------------------------

    def start_intake(self) -> None:
        _freeze_startup_objects()
        # Bounded: if dispatching falls far behind a burst, intake waits rather than piling up.
        self._dispatch = queue.Queue(maxsize=1000)
        dispatcher = threading.Thread(target=self._dispatcher, name="dispatch", daemon=True)
        dispatcher.start()
        self._threads.append(dispatcher)
        for index in range(len(self.consumers)):
            self._start_consumer(index)
        supervisor = threading.Thread(target=self._supervise, name="intake-supervisor", daemon=True)
        supervisor.start()
        self._threads.append(supervisor)
        checkpoints = threading.Thread(
            target=self.checkpointer.run,
            args=(self.stop_event, self.settings.checkpoint_interval_s),
            name="checkpoints",
            daemon=True,
        )
        checkpoints.start()
        self._threads.append(checkpoints)

    def _start_consumer(self, index: int) -> None:
        consumer = self.consumers[index]
        thread = threading.Thread(
            target=consumer.run, args=(self.stop_event,), name=f"intake-{consumer.name}"
        )
        thread.daemon = True
        thread.start()
        self._intake_threads[index] = thread
        self._threads.append(thread)

    def _supervise(self) -> None:
        while not self.stop_event.wait(self.supervise_every_s):
            try:
                self.supervise_once()
            except Exception:  # the supervisor itself must outlive a bug
                log.exception("intake supervisor failed")

    def supervise_once(self) -> int:
        """Restart every intake thread that has ended (it should not); returns how many."""
        restarted = 0
        for index, thread in enumerate(self._intake_threads):
            if self.stop_event.is_set() or thread is None or thread.is_alive():
                continue
            log.error("intake %s: thread ended; restarting it", self.consumers[index].name)
            self._threads.remove(thread)
            self._start_consumer(index)
            self.intake_restarts += 1
            restarted += 1
        return restarted

    def intake_alive(self) -> bool:
        """Whether every started intake thread is running."""
        return all(t is None or t.is_alive() for t in self._intake_threads)

    def _intake_health(self) -> tuple[list[dict[str, Any]], str | None]:
        """Per consumer: its counters and health; and why intake is degraded (None if not)."""
        out, problems = [], []
        for consumer, thread in zip(self.consumers, self._intake_threads, strict=True):
            health = consumer.health()
            health["alive"] = thread is None or thread.is_alive()
            out.append({**vars(consumer.stats), **health})
            if thread is not None and not health["alive"]:
                problems.append(f"{consumer.name}: not running (the supervisor restarts it)")
            elif health["failures"] >= 3:
                problems.append(f"{consumer.name}: failing ({health['last_error']})")
        return out, "; ".join(problems) or None

    def stop_intake(self) -> None:
        self.stop_event.set()
        for thread in self._threads:
            if thread.name != "dispatch":
                thread.join(timeout=5)
        if self._dispatch is not None:  # after the consumers: what they stored still dispatches
            self._dispatch.put(None)
        for thread in self._threads:
            thread.join(timeout=5)

    def request_stop(self) -> None:
        """Stop a ``serve()`` running in another thread (thread-safe)."""
        stop, loop = getattr(self, "_stop", None), getattr(self, "_loop", None)
        if stop is not None and loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(stop.set)
        self.stop_event.set()

    async def serve(
        self,
        host: str = "0.0.0.0",
        port: int = 3000,
        on_listening: Callable[[int], None] | None = None,
    ) -> None:
        """Run until SIGINT/SIGTERM. SIGHUP reloads the policy.

        ``port=0`` binds any free port; ``on_listening`` is called with the port actually bound
        (read from the listening socket) once the server accepts connections.
        """
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        self._stop, self._loop = stop, loop
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(
                signal.SIGHUP, lambda: loop.run_in_executor(None, self.reload_policy)
            )
        from hitl.bot.api import mount_api
        from hitl.bot.inbox import mount_inbox
        from hitl.bot.notify.mount import mount_notifiers
        from hitl.bot.prometheus import mount_metrics
        from hitl.bot.slack import mount_slack
        from hitl.bot.teams import mount_teams

        self.api = mount_api(self)  # /api/v1: the CLI's and scripts' way to decide
        self.inbox = mount_inbox(self, self.api)  # /inbox: the same decisions in a browser
        mount_metrics(self)  # /metrics: the governance figures for Prometheus
        self.slack = mount_slack(self)  # None without SLACK_* settings
        self.teams = mount_teams(self)  # None without MICROSOFT_APP_* settings
        self.outbox = mount_notifiers(self)  # None without email/SMS/PagerDuty/Jira settings
        runner = web.AppRunner(self.app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        self.port = site.port  # the bound port: not `port` when that was 0
        log.info("hitl serving on http://%s:%d (healthz at /healthz)", host, self.port)
        if on_listening is not None:
            on_listening(self.port)
        await asyncio.to_thread(self.scheduler.arm_tick)
        self.start_intake()
        tasks = [
            asyncio.create_task(self.webhooks.run(stop)),
            asyncio.create_task(self._watch_policy(stop)),
            asyncio.create_task(self._watch_reviewers(stop)),
        ]
        try:
            await stop.wait()
        finally:
            self.stop_intake()
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await runner.cleanup()
