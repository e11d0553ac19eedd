"""The outbox: what the dispatcher hands notifiers, sent once, retried, recorded, failed over.

The :class:`~hitl.bot.dispatch.Dispatcher` calls it at three moments, and never waits for it
(every send runs as its own task, so a slow SMTP server never holds a card or a decision):

- :meth:`Outbox.review`: a request was stored for review: its verdict's ``notify`` targets;
- :meth:`Outbox.escalated`: escalation level N was reached: that step's ``notify`` targets;
- :meth:`Outbox.decided`: the request is decided: PagerDuty incidents are resolved and Jira
  issues get the decision as a comment and a transition.

Email and SMS targets mean people (``sms:oncall:managers`` is whoever is on call now, never the
requester); each gets decision links bound to them (:mod:`hitl.handlers.links`). Every
notification is a :class:`~hitl.queue.deliveries.Delivery` (claimed once, its status kept);
a send that still fails after ``max_attempts`` (back-off doubling from ``backoff_s``) is audited
(``notification_failed``) and the next notifier target of the request's chain is told instead
(``notification_fallback``)::

    outbox = Outbox(store, [email, sms], people=policy, settings=settings, keyring=ring)
    dispatcher = Dispatcher(store, channels, people=policy, outbox=outbox)
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, Literal, Protocol, runtime_checkable

from hitl.handlers.links import issue_link
from hitl.identity import canonical_id
from hitl.keys import KeyRing
from hitl.models import Destination, NotifyTarget, RequestRecord, State
from hitl.queue.audit import AuditEvent
from hitl.queue.deliveries import Deliveries, Delivery, DeliveryStatus
from hitl.queue.store import Store

from .base import Contact, Message, Notifier, NotifyError, Sent
from .settings import NotifySettings

__all__ = ["ACTOR", "LINK_PATH", "Contacts", "Outbox", "Person", "chain_targets"]

log = logging.getLogger("hitl.notify")

ACTOR = "notify"
LINK_PATH = "/api/v1/links/"
MAX_BACKOFF_S = 300.0
_FOLLOW_UP = ("pagerduty", "jira")


class Person(Protocol):
    """A reviewer as the directory knows them (:class:`hitl.policies.DirectoryEntry` is one)."""

    @property
    def id(self) -> str: ...
    @property
    def display_name(self) -> str: ...
    @property
    def email(self) -> str | None: ...
    @property
    def phone(self) -> str | None: ...


@runtime_checkable
class Contacts(Protocol):
    """Who a target means and how to reach them (:class:`hitl.policies.Policy` is one)."""

    def resolve(self, destination: Destination, at: datetime.datetime) -> list[str]: ...

    def same_person(self, a: str, b: str) -> bool: ...

    def reviewer(self, user_id: str) -> Person | None: ...


def chain_targets(record: RequestRecord) -> list[tuple[int, NotifyTarget]]:
    """The request's notifier targets in chain order: (level, target), level 0 = at review."""
    verdict = record.verdict
    out = [(0, t) for t in verdict.notify]
    for level, step in enumerate(verdict.escalation, start=1):
        out += [(level, t) for t in step.notify]
    return out


class Outbox:
    """Sends notifications for the dispatcher (see the module docstring)."""

    def __init__(
        self,
        store: Store,
        notifiers: Sequence[Notifier],
        *,
        people: object,
        settings: NotifySettings,
        keyring: KeyRing | None = None,
    ) -> None:
        self.store = store
        self.deliveries = Deliveries(store)
        self.notifiers = {n.kind: n for n in notifiers}
        self.people: Contacts | None = people if isinstance(people, Contacts) else None
        self.settings = settings
        self.keyring = keyring
        self._tasks: set[asyncio.Task[None]] = set()

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        for notifier in self.notifiers.values():
            await notifier.start()

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for notifier in self.notifiers.values():
            try:
                await notifier.stop()
            except Exception:  # one notifier's failure must not keep the others open
                log.exception("stopping notifier %s failed", notifier.kind)

    async def idle(self) -> None:
        """Wait until every send started so far (and what it started) has finished."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("a notification failed", exc_info=task.exception())

    # -- the three moments ---------------------------------------------------------------------

    def review(self, record: RequestRecord) -> None:
        """A request stored for review: tell its verdict's notifier targets."""
        for position, (level, target) in enumerate(chain_targets(record)):
            if level == 0:
                self._spawn(self._deliver(record, target, position, "review", "review"))

    async def catch_up(self, records: Sequence[RequestRecord]) -> None:
        """Tell the review targets of requests nothing was ever sent about (stored while no
        dispatcher ran); a request with any delivery is left alone, so an on-call hand-off
        since then does not send its notice again to the next person."""
        todo = [r for r in records if r.verdict.notify]
        if not todo:
            return
        counts = await asyncio.to_thread(lambda: [self.deliveries.count(r.id) for r in todo])
        for record, count in zip(todo, counts, strict=True):
            if count == 0:
                self.review(record)

    def escalated(self, record: RequestRecord, level: int, text: str = "") -> None:
        """Escalation level ``level`` reached: tell that step's notifier targets."""
        steps = len(record.verdict.escalation)
        what = f"escalation level {level} of {steps}"
        for position, (at, target) in enumerate(chain_targets(record)):
            if at == level:
                self._spawn(self._deliver(record, target, position, what, f"esc{level}", text))

    def decided(self, record: RequestRecord) -> None:
        """A decided request: resolve its incidents, comment on and transition its issues."""
        if record.state is not State.PENDING:
            self._spawn(self._follow_up(record))

    # -- sending -------------------------------------------------------------------------------

    async def _deliver(
        self,
        record: RequestRecord,
        target: NotifyTarget,
        position: int,
        what: str,
        key: str,
        text: str = "",
    ) -> None:
        notifier = self.notifiers.get(target.kind)
        people: list[Contact | None] = [None]
        problem = ""
        if notifier is None:
            problem = f"no {target.kind} notifier is configured (docs/notifications.md)"
        elif target.kind in ("email", "sms"):
            people = list(await asyncio.to_thread(self._people, record, target))
            if not people:
                problem = f"{target} means nobody now (the requester is never told to approve)"
        if notifier is None or problem:
            delivery = self._new(record, target, what, f"{key}:{target}", to=target.target)
            if await asyncio.to_thread(self.deliveries.claim, delivery):
                await self._failed(record, delivery, problem, position)
            return
        await asyncio.gather(
            *(
                self._send(notifier, record, target, position, what, key, text, person)
                for person in people
            )
        )

    async def _send(
        self,
        notifier: Notifier,
        record: RequestRecord,
        target: NotifyTarget,
        position: int,
        what: str,
        key: str,
        text: str,
        person: Contact | None,
    ) -> None:
        to = person.id if person is not None else target.target
        suffix = f":{person.id}" if person is not None else ""
        delivery = self._new(record, target, what, f"{key}:{target}{suffix}", to=to)
        if not await asyncio.to_thread(self.deliveries.claim, delivery):
            return  # another replica (or an earlier run) sends this one
        message = Message(
            record=record,
            target=target,
            what=what,
            text=text,
            person=person,
            links=self._links(record, target, person),
        )
        sent, delivery, error = await self._attempts(delivery, lambda: notifier.send(message))
        if sent is None:
            await self._failed(record, delivery, error, position)
            return
        delivery = delivery.moved(
            sent.status, self.store.clock(), ref=sent.ref, address=sent.address, error=""
        )
        await asyncio.to_thread(self.deliveries.put, delivery)
        if target.kind in _FOLLOW_UP:
            current = await asyncio.to_thread(self.store.find, record.id)
            if current is not None and current.state is not State.PENDING:
                self.decided(current)  # decided while this was being sent

    async def _attempts(
        self, delivery: Delivery, call: Callable[[], Awaitable[Sent | None]]
    ) -> tuple[Sent | None, Delivery, str]:
        """Try ``call`` up to ``max_attempts`` times with back-off; (result, delivery, error)."""
        error = ""
        for n in range(self.settings.max_attempts):
            delivery = delivery.model_copy(update={"attempts": n + 1})
            try:
                sent = await call()
                return sent or Sent(status="skipped"), delivery, ""
            except NotifyError as exc:
                error = str(exc)
                if not exc.retry:
                    break
            except Exception as exc:  # a notifier's bug: fail over rather than lose it
                log.exception("%s notifier failed", delivery.kind)
                error = f"{type(exc).__name__}: {exc}"
                break
            if n + 1 < self.settings.max_attempts:
                await asyncio.sleep(min(MAX_BACKOFF_S, self.settings.backoff_s * 2**n))
        return None, delivery, error

    async def _failed(
        self, record: RequestRecord, delivery: Delivery, error: str, position: int | None
    ) -> None:
        """Record and audit a failed delivery, then tell the next target of the chain."""
        delivery = delivery.moved("failed", self.store.clock(), error=error[:500])
        await asyncio.to_thread(self.deliveries.put, delivery)
        details: dict[str, Any] = {
            "target": delivery.target,
            "to": delivery.to,
            "what": delivery.what,
            "attempts": delivery.attempts,
            "error": error[:500],
        }
        event = AuditEvent(
            "notification_failed", record.id, ACTOR, details, record.verdict.policy_version
        )
        await asyncio.to_thread(self.store.append_events, [event])
        log.warning("%s to %s about %s failed: %s", delivery.target, delivery.to, record.id, error)
        if position is not None:
            await self._fall_back(record, delivery, position)

    async def _fall_back(self, record: RequestRecord, failed: Delivery, position: int) -> None:
        current = await asyncio.to_thread(self.store.find, record.id)
        if current is None or current.state is not State.PENDING:
            return
        told = {d.target for d in await asyncio.to_thread(self.deliveries.list, record.id)}
        chain = chain_targets(current)
        following = next(
            ((i, t) for i, (_, t) in enumerate(chain) if i > position and str(t) not in told),
            None,
        )
        details: dict[str, Any] = {"failed": failed.target, "to": failed.to}
        details["next"] = str(following[1]) if following is not None else None
        event = AuditEvent(
            "notification_fallback", record.id, ACTOR, details, record.verdict.policy_version
        )
        await asyncio.to_thread(self.store.append_events, [event])
        if following is not None:
            index, target = following
            what = f"fallback for {failed.target}"
            key = f"fallback:{failed.target}"
            text = f"{failed.target} could not be reached about this request."
            await self._deliver(current, target, index, what, key, text)

    # -- after the decision --------------------------------------------------------------------

    async def _follow_up(self, record: RequestRecord) -> None:
        started = await asyncio.to_thread(self.deliveries.list, record.id)
        for first in started:
            notifier = self.notifiers.get(first.kind)
            if (
                notifier is None
                or first.kind not in _FOLLOW_UP
                or first.status not in ("sent", "linked")
                or not first.ref
            ):
                continue
            delivery = self._new(
                record,
                NotifyTarget.model_validate({"kind": first.kind, "target": first.to}),
                "decision",
                f"decided:{first.key}",
                to=first.to,
            )
            if not await asyncio.to_thread(self.deliveries.claim, delivery):
                continue

            async def call(notifier: Notifier = notifier, first: Delivery = first) -> Sent | None:
                return await notifier.decided(record, first)

            sent, delivery, error = await self._attempts(delivery, call)
            if sent is None:
                await self._failed(record, delivery, error, None)
                continue
            delivery = delivery.moved(
                sent.status, self.store.clock(), ref=sent.ref or first.ref, address=first.address
            )
            await asyncio.to_thread(self.deliveries.put, delivery)

    # -- provider callbacks --------------------------------------------------------------------

    async def status(self, ref: str, status: DeliveryStatus, error: str = "") -> Delivery | None:
        """A provider reported on a delivery (a Twilio status callback): record it; a failed
        or undelivered message is audited and fails over like a failed send."""
        delivery = await asyncio.to_thread(self.deliveries.by_ref, ref)
        if delivery is None:
            return None
        if delivery.status in ("delivered", "failed", "undelivered") and status == "sent":
            return delivery  # a late "sent" report never undoes a final status
        if status in ("failed", "undelivered") and delivery.status not in ("failed", "undelivered"):
            record = await asyncio.to_thread(self.store.find, delivery.request_id)
            if record is not None:
                chain = [str(t) for _, t in chain_targets(record)]
                position = chain.index(delivery.target) if delivery.target in chain else None
                await self._failed(record, delivery, error or status, position)
                return await asyncio.to_thread(
                    self.deliveries.get, delivery.request_id, delivery.key
                )
        moved = delivery.moved(status, self.store.clock(), error=error[:500])
        await asyncio.to_thread(self.deliveries.put, moved)
        return moved

    # -- helpers -------------------------------------------------------------------------------

    def _new(
        self, record: RequestRecord, target: NotifyTarget, what: str, key: str, *, to: str
    ) -> Delivery:
        now = self.store.clock()
        return Delivery(
            key=key,
            request_id=record.id,
            kind=target.kind,
            target=str(target),
            to=to,
            what=what,
            created_at=now,
            updated_at=now,
            history=[f"queued at {now:.3f}"],
        )

    def _people(self, record: RequestRecord, target: NotifyTarget) -> list[Contact]:
        """Who an email/SMS target means now, without the requester, with their addresses."""
        where = target.people
        people = self.people
        if where is None or people is None:
            return []
        at = datetime.datetime.fromtimestamp(self.store.clock(), datetime.UTC)
        requester = record.request.requested_by
        out: list[Contact] = []
        for pid in dict.fromkeys(people.resolve(where, at)):
            if requester and (
                people.same_person(pid, requester) or canonical_id(pid) == canonical_id(requester)
            ):
                continue
            entry = people.reviewer(pid)
            if entry is not None:
                name = entry.display_name or entry.id
                out.append(Contact(entry.id, name, email=entry.email, phone=entry.phone))
        return out

    def _links(
        self, record: RequestRecord, target: NotifyTarget, person: Contact | None
    ) -> dict[str, str]:
        """Decision links for ``person`` (email: approve and reject; SMS: the page)."""
        ring = self.keyring
        if person is None or ring is None or target.kind not in ("email", "sms"):
            return {}
        via: Literal["email", "sms"] = "email" if target.kind == "email" else "sms"
        expires = self.store.clock() + self.settings.link_ttl_s
        base = self.settings.public_url + LINK_PATH

        def link(act: Any) -> str:
            return base + issue_link(
                ring, request_id=record.id, reviewer_id=person.id, act=act, via=via,
                expires_at=expires,
            )  # fmt: skip

        if via == "sms":
            return {"page": link("any")}
        return {"approve": link("approve"), "reject": link("reject")}
