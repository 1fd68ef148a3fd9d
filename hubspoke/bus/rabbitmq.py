"""The RabbitMQ bus of the local stack: durable quorum queues, publisher confirms, manual acks.

Topology, all names carrying the namespace `ns` of the home (so homes and tests never collide):

- `{ns}.topics`: durable topic exchange; the routing key of a message is its topic;
- `{ns}.{topic}.{subscriber}`: one durable quorum queue per subscriber of a topic, bound with the
  topic as binding key, declared with
  `x-queue-type=quorum`, `x-delivery-limit` (20 by default),
  `x-dead-letter-exchange={ns}.dead`, `x-dead-letter-strategy=at-least-once` and
  `x-overflow=reject-publish` (the strategy requires it; no length limit is set, so it never
  refuses a publish);
- `{ns}.dead` (fanout) and `{ns}.dead-letters` (quorum queue): messages rejected without requeue,
  or handed out more than the delivery limit times without an ack, land there, with RabbitMQ's
  `x-death` header naming the queue they came from.

A subscriber's queue must exist before a message is published, or the message reaches no queue
for it. `publish` therefore declares the queues of every known subscriber of the topic first
(`SUBSCRIBERS`, plus any subscriber this bus fetched for), so a subscriber sees everything
published since the namespace was first used, as with the SQLite bus. A subscriber that is not
known to the publishing process starts at its first fetch or pending call (the SQLite bus starts
it at the beginning of the topic). A topic with no subscriber at all refuses the publish
(mandatory flag) instead of dropping it.

Quorum queues rather than classic ones: the broker (3.10 here) supports them, they replicate
and fsync through Raft, and they are the only kind with a delivery limit, which keeps a message
that crashes every consumer from looping forever.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

import pika
import pika.exceptions
import pika.frame
import pika.spec
from pika.adapters.blocking_connection import BlockingChannel, BlockingConnection

from hubspoke.bus.base import (
    BROADCAST_TOPIC,
    ERASURE_TOPIC,
    IDENTITY_TOPIC,
    BusError,
    BusUnavailable,
    Delivery,
    EventBus,
)
from hubspoke.config import ConfigError

SUBSCRIBERS: Mapping[str, tuple[str, ...]] = {
    IDENTITY_TOPIC: ("hub",),
    BROADCAST_TOPIC: ("sales", "support", "billing"),
    ERASURE_TOPIC: ("sales", "support", "billing"),
}
"""Subscribers whose queues exist before their first fetch (the hub, and `spokes.SPOKE_KINDS`)."""

DELIVERY_LIMIT = 20
"""Deliveries of one message without an ack (crashes included) before it is dead-lettered."""

_PUBLISH_WINDOW = 2000
"""Unconfirmed messages in flight before publish waits for confirms (bounds client memory)."""
_CONFIRM_TIMEOUT_S = 30.0
"""How long publish waits for the broker's confirms before calling the broker unavailable."""
_QUIET_S = 1.0
"""A fetch stops waiting for expected messages after this long without one (another consumer
took them)."""
_MAX_PREFETCH = 65535
"""basic.qos prefetch_count is a 16-bit field."""
_TAG_BITS = 40
_TAG_MASK = (1 << _TAG_BITS) - 1
_NAME = re.compile(r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$")
_channel_generations = itertools.count(1)
"""Numbers the consuming channels of this process: a Delivery's tag carries its channel's number,
so an ack after a reconnect is recognised as stale instead of acking another message."""

T = TypeVar("T")


@dataclass
class _Subscription:
    """The channel one subscriber consumes on, and the deliveries it holds unacknowledged."""

    queue: str
    channel: BlockingChannel
    generation: int
    held: list[Delivery] = field(default_factory=list)
    acked: int = 0
    """Highest delivery tag acknowledged on this channel."""


@dataclass
class _Link:
    """One thread's connection: an admin channel, a confirming publisher, one channel per queue."""

    connection: BlockingConnection
    admin: BlockingChannel
    publisher: _Publisher | None = None
    subscriptions: dict[tuple[str, str], _Subscription] = field(default_factory=dict)
    declared: set[str] = field(default_factory=set)


class RabbitBus(EventBus):
    """Topics on a RabbitMQ broker, one namespace per home; safe to use from several threads.

    Each thread gets its own connection (pika connections are not thread-safe), connected on
    first use, so opening a stack never needs the broker. Deliveries are acknowledged manually,
    from the thread that fetched them: an ack acknowledges every earlier delivery of that
    subscriber (the hub and spokes consume in order), and whatever a process fetched but did not
    acknowledge is handed out again when its connection ends, crash or kill -9 included.
    """

    def __init__(
        self,
        url: str,
        namespace: str,
        *,
        subscribers: Mapping[str, Iterable[str]] = SUBSCRIBERS,
        delivery_limit: int = DELIVERY_LIMIT,
    ) -> None:
        if not _NAME.match(namespace):
            raise ConfigError(f"RabbitMQ namespace {namespace!r} must be letters, digits, _ - .")
        self.url = url
        self.namespace = namespace
        self.display_url = _without_password(url)
        self.exchange = f"{namespace}.topics"
        self.dead_exchange = f"{namespace}.dead"
        self.dead_letter_queue = f"{namespace}.dead-letters"
        self.delivery_limit = delivery_limit
        self._params = _parameters(url, namespace)
        self._subscribers: dict[str, set[str]] = {t: set(s) for t, s in subscribers.items()}
        self._queues: set[str] = set()
        self._local = threading.local()

    def queue_name(self, topic: str, subscriber: str) -> str:
        """The queue holding `subscriber`'s copy of `topic`."""
        return f"{self.namespace}.{_checked('topic', topic)}.{_checked('subscriber', subscriber)}"

    # --- EventBus ------------------------------------------------------------------------------

    def publish(self, topic: str, bodies: Sequence[bytes]) -> None:
        """Publish persistent messages in order; returns once the broker confirmed every one."""
        _checked("topic", topic)
        if not bodies:
            return

        def op(link: _Link) -> None:
            for subscriber in sorted(self._subscribers.get(topic, ())):
                self._declare_queue(link, topic, subscriber)
            self._declare_base(link)
            if link.publisher is None:
                link.publisher = _Publisher(link.connection)
            link.publisher.publish(self.exchange, topic, bodies)

        self._run(op)

    def fetch(self, topic: str, subscriber: str, limit: int) -> list[Delivery]:
        """Up to `limit` unacknowledged messages, oldest first (held ones are handed out again)."""
        if limit < 1:
            return []

        def op(link: _Link) -> list[Delivery]:
            sub = self._subscription(link, topic, subscriber)
            want = limit - len(sub.held)
            while want > 0:
                ready = self._ready(link, sub.queue)
                n = min(want, ready, _MAX_PREFETCH)
                if n == 0:
                    break
                got = self._consume(link, sub, n)
                want -= got
                if got < n:
                    break  # another consumer took the rest
            return sub.held[:limit]

        return self._run(op)

    def ack(self, topic: str, subscriber: str, deliveries: Sequence[Delivery]) -> None:
        """Acknowledge these deliveries and every earlier one of `subscriber`."""
        if not deliveries:
            return
        generations = {d.tag >> _TAG_BITS for d in deliveries}
        last = max(d.tag & _TAG_MASK for d in deliveries)

        def holding(link: _Link | None) -> _Subscription:
            sub = link.subscriptions.get((topic, subscriber)) if link else None
            if sub is None or generations != {sub.generation}:
                raise BusUnavailable(
                    f"the connection to RabbitMQ at {self.display_url} that fetched these"
                    f" {topic} deliveries for {subscriber!r} was lost; RabbitMQ hands them out"
                    " again"
                )
            return sub

        holding(getattr(self._local, "link", None))  # stale: say so without connecting

        def op(link: _Link) -> None:
            sub = holding(link)  # the link is new if the old one died since the fetch
            if last <= sub.acked:
                return  # already acknowledged, like a second ack on the SQLite bus
            sub.channel.basic_ack(delivery_tag=last, multiple=True)
            sub.acked = last
            sub.held = [d for d in sub.held if d.tag & _TAG_MASK > last]

        self._run(op)

    def pending(self, topic: str, subscriber: str) -> int:
        """Messages ready in the queue plus those this process holds unacknowledged.

        RabbitMQ's queue.declare reports ready messages only: deliveries another process holds
        unacknowledged are not counted (the management API would be needed for those).
        """

        def op(link: _Link) -> int:
            sub = self._subscription(link, topic, subscriber)
            return self._ready(link, sub.queue) + len(sub.held)

        return self._run(op)

    def oldest_pending_at(self, topic: str, subscriber: str) -> float | None:
        """Publish time of the oldest delivery this process holds; None when it holds none.

        Reading the publish time of a message still waiting in the queue would mean taking it
        and giving it back, which counts as a delivery toward the delivery limit (and a status
        poll every few seconds would dead-letter it), so that age is not reported.
        """
        link: _Link | None = getattr(self._local, "link", None)
        sub = link.subscriptions.get((topic, subscriber)) if link else None
        if sub is None or not sub.held:
            return None
        return min(d.published_at for d in sub.held)

    def close(self) -> None:
        """Close this thread's connection; RabbitMQ requeues what it held unacknowledged."""
        link: _Link | None = getattr(self._local, "link", None)
        if link is not None:
            self._drop(link)

    # --- beyond the interface ------------------------------------------------------------------

    def dead_letter_count(self) -> int:
        """Messages waiting in the namespace's dead-letter queue."""

        def op(link: _Link) -> int:
            self._declare_base(link)
            return self._ready(link, self.dead_letter_queue)

        return self._run(op)

    def delete_namespace(self) -> None:
        """Delete every queue and exchange of the namespace this bus knows (for tests' cleanup).

        Known queues are those of `SUBSCRIBERS` and every queue this bus declared; AMQP cannot
        list queues, so a queue only another process declared is not found.
        """
        queues = {
            self.queue_name(topic, s) for topic, subs in self._subscribers.items() for s in subs
        }
        queues |= set(self._queues) | {self.dead_letter_queue}

        def op(link: _Link) -> None:
            for queue in sorted(queues):
                link.admin.queue_delete(queue)
            for exchange in (self.exchange, self.dead_exchange):
                link.admin.exchange_delete(exchange)

        self.close()  # drop this thread's consumers and cached declarations first
        try:
            self._run(op)
        finally:
            self.close()

    # --- connection and channels ---------------------------------------------------------------

    def _run(self, op: Callable[[_Link], T]) -> T:
        """Run `op` on this thread's link; broker failures become BusUnavailable or BusError."""
        link = self._link()
        try:
            return op(link)
        except (BusError, BusUnavailable):
            self._drop(link)  # the link's channels may hold half-done state: start afresh
            raise
        except (pika.exceptions.AMQPConnectionError, OSError) as exc:
            self._drop(link)
            raise BusUnavailable(
                f"lost the connection to RabbitMQ at {self.display_url}: {_reason(exc)}"
            ) from exc
        except pika.exceptions.ChannelClosedByBroker as exc:
            self._drop(link)
            raise BusError(
                f"RabbitMQ at {self.display_url} refused an operation: {exc.reply_text}"
                f" ({exc.reply_code})"
            ) from exc
        except pika.exceptions.AMQPError as exc:
            self._drop(link)
            raise BusError(f"RabbitMQ at {self.display_url}: {_reason(exc)}") from exc

    def _link(self) -> _Link:
        link: _Link | None = getattr(self._local, "link", None)
        if link is not None:
            try:
                # Notices a connection the broker closed while this process was idle.
                link.connection.process_data_events(time_limit=0)
                if link.connection.is_open:
                    return link
            except (pika.exceptions.AMQPError, OSError):
                pass
            self._drop(link)
        try:
            connection = pika.BlockingConnection(self._params)
        except (pika.exceptions.ProbableAuthenticationError, pika.exceptions.AuthenticationError):
            raise BusUnavailable(
                f"RabbitMQ at {self.display_url} refused the login; check the user and password"
                " of HUBSPOKE_RABBITMQ_URL"
            ) from None
        except pika.exceptions.ProbableAccessDeniedError as exc:
            raise BusUnavailable(
                f"RabbitMQ at {self.display_url} refused access to the virtual host"
                f" ({_reason(exc)}); check the vhost of HUBSPOKE_RABBITMQ_URL"
            ) from None
        except (pika.exceptions.AMQPError, OSError) as exc:
            raise BusUnavailable(
                f"no RabbitMQ answering at {self.display_url} ({_reason(exc)}); start the broker"
                " or point HUBSPOKE_RABBITMQ_URL at one"
            ) from None
        link = _Link(connection=connection, admin=connection.channel())
        self._local.link = link
        return link

    def _drop(self, link: _Link) -> None:
        if getattr(self._local, "link", None) is link:
            self._local.link = None
        # A connection that is already broken needs no closing.
        with contextlib.suppress(pika.exceptions.AMQPError, OSError):
            if link.connection.is_open:
                link.connection.close()

    def _queue_arguments(self) -> dict[str, Any]:
        return {
            "x-queue-type": "quorum",
            "x-delivery-limit": self.delivery_limit,
            "x-dead-letter-exchange": self.dead_exchange,
            # at-least-once: a dead-lettered message leaves the queue only once the dead-letter
            # queue confirmed it (the default at-most-once may lose it); needs reject-publish.
            "x-dead-letter-strategy": "at-least-once",
            "x-overflow": "reject-publish",
        }

    def _declare_base(self, link: _Link) -> None:
        if self.exchange in link.declared:
            return
        admin = link.admin
        admin.exchange_declare(self.exchange, "topic", durable=True)
        admin.exchange_declare(self.dead_exchange, "fanout", durable=True)
        admin.queue_declare(
            self.dead_letter_queue, durable=True, arguments={"x-queue-type": "quorum"}
        )
        admin.queue_bind(self.dead_letter_queue, self.dead_exchange)
        link.declared.add(self.exchange)

    def _declare_queue(self, link: _Link, topic: str, subscriber: str) -> str:
        queue = self.queue_name(topic, subscriber)
        if queue not in link.declared:
            self._declare_base(link)
            link.admin.queue_declare(queue, durable=True, arguments=self._queue_arguments())
            link.admin.queue_bind(queue, self.exchange, routing_key=topic)
            link.declared.add(queue)
            self._queues.add(queue)
        return queue

    def _subscription(self, link: _Link, topic: str, subscriber: str) -> _Subscription:
        sub = link.subscriptions.get((topic, subscriber))
        if sub is None:
            queue = self._declare_queue(link, topic, subscriber)
            # Remembered so later publishes declare this queue too, even on a new connection.
            self._subscribers.setdefault(topic, set()).add(subscriber)
            sub = _Subscription(queue, link.connection.channel(), next(_channel_generations))
            link.subscriptions[(topic, subscriber)] = sub
        return sub

    def _ready(self, link: _Link, queue: str) -> int:
        return link.admin.queue_declare(queue, passive=True).method.message_count

    def _consume(self, link: _Link, sub: _Subscription, n: int) -> int:
        """Take `n` messages through a consumer (basic.get on a quorum queue is ~30x slower)."""
        before = len(sub.held)
        base = sub.generation << _TAG_BITS

        def on_message(
            _ch: BlockingChannel,
            method: pika.spec.Basic.Deliver,
            properties: pika.spec.BasicProperties,
            body: bytes,
        ) -> None:
            sub.held.append(Delivery(base | method.delivery_tag, body, _published_at(properties)))

        # Prefetch exactly n: the broker never sends this consumer more than was asked for.
        sub.channel.basic_qos(prefetch_count=n)
        consumer = sub.channel.basic_consume(sub.queue, on_message, auto_ack=False)
        try:
            last_progress = time.monotonic()
            while len(sub.held) - before < n:
                seen = len(sub.held)
                link.connection.process_data_events(time_limit=0.05)
                if len(sub.held) > seen:
                    last_progress = time.monotonic()
                elif time.monotonic() - last_progress > _QUIET_S:
                    break
        finally:
            if sub.channel.is_open:
                sub.channel.basic_cancel(consumer)
        return len(sub.held) - before


class _Publisher:
    """A channel in confirm mode: streams a batch, then waits until the broker confirmed it all."""

    def __init__(self, connection: BlockingConnection) -> None:
        self._connection = connection
        self._blocking = connection.channel()
        # BlockingChannel.confirm_delivery() makes every basic_publish wait for its own confirm
        # (about 1,200 messages/s here). The asynchronous channel underneath takes a callback
        # instead, so a batch streams and its confirms are awaited together (about 13,000/s).
        self._channel = self._blocking._impl
        self._unconfirmed: set[int] = set()
        self._sent = 0
        self._nacked = 0
        self._returned = 0
        self._closed: str | None = None
        self._waiting_for: Callable[[], bool] | None = None
        selected: list[bool] = []
        self._channel.add_on_return_callback(self._on_return)
        self._channel.add_on_close_callback(self._on_close)
        self._channel.confirm_delivery(
            ack_nack_callback=self._on_confirm, callback=lambda _frame: selected.append(True)
        )
        self._wait(lambda: bool(selected))

    def publish(self, exchange: str, routing_key: str, bodies: Sequence[bytes]) -> None:
        """Publish every body persistently; raise unless the broker confirmed and routed all."""
        self._nacked = self._returned = 0
        now = time.time()
        properties = pika.BasicProperties(
            delivery_mode=2,  # persistent (quorum queues store every message anyway)
            timestamp=int(now),  # AMQP timestamps are whole seconds; the header keeps the ms
            headers={"published_ms": int(now * 1000)},
        )
        for body in bodies:
            self._channel.basic_publish(exchange, routing_key, body, properties, mandatory=True)
            self._sent += 1
            self._unconfirmed.add(self._sent)
            if len(self._unconfirmed) >= _PUBLISH_WINDOW:
                self._wait(lambda: len(self._unconfirmed) < _PUBLISH_WINDOW // 2)
        self._wait(lambda: not self._unconfirmed)
        if self._nacked:
            raise BusError(
                f"RabbitMQ refused {self._nacked} of {len(bodies)} messages on {routing_key!r}"
                " (nack); none of the batch should be considered sent"
            )
        if self._returned:
            raise BusError(
                f"{self._returned} of {len(bodies)} messages on {routing_key!r} reached no queue:"
                " the topic has no subscriber in this namespace"
            )

    def _wait(self, done: Callable[[], bool]) -> None:
        deadline = time.monotonic() + _CONFIRM_TIMEOUT_S
        self._waiting_for = done
        try:
            while not done():
                if self._closed is not None:
                    raise BusError(f"RabbitMQ closed the publishing channel: {self._closed}")
                if time.monotonic() > deadline:
                    raise BusUnavailable(
                        f"RabbitMQ confirmed no message for {_CONFIRM_TIMEOUT_S:.0f}s"
                        f" ({len(self._unconfirmed)} waiting)"
                    )
                self._connection.process_data_events(time_limit=0.25)
        finally:
            self._waiting_for = None

    def _wake_if_done(self) -> None:
        # Confirms arrive in a callback of the asynchronous channel, which does not end
        # process_data_events' wait by itself; a no-op callback does.
        if self._waiting_for is not None and self._waiting_for():
            self._wake()

    def _on_confirm(self, frame: pika.frame.Method) -> None:
        method = frame.method
        if method.multiple:
            settled = {t for t in self._unconfirmed if t <= method.delivery_tag}
        else:
            settled = {method.delivery_tag} & self._unconfirmed
        self._unconfirmed -= settled
        if isinstance(method, pika.spec.Basic.Nack):
            self._nacked += len(settled)
        self._wake_if_done()

    def _on_return(self, *_: object) -> None:
        self._returned += 1  # Basic.Return precedes the Basic.Ack of the same message

    def _on_close(self, _channel: object, reason: BaseException) -> None:
        self._closed = str(reason)
        self._wake()

    def _wake(self) -> None:
        # A closing connection ends the wait by itself (process_data_events raises).
        with contextlib.suppress(pika.exceptions.ConnectionWrongStateError):
            self._connection.add_callback_threadsafe(_noop)


def _noop() -> None:
    pass


def _published_at(properties: pika.spec.BasicProperties) -> float:
    headers = properties.headers or {}
    if isinstance(headers.get("published_ms"), int):
        return headers["published_ms"] / 1000
    if properties.timestamp is not None:
        return float(properties.timestamp)
    return time.time()  # published by a foreign client without a timestamp: count from now


def _checked(kind: str, name: str) -> str:
    # Topic exchange binding keys treat * and # as wildcards; names are dotted words only.
    if not _NAME.match(name) or len(name) > 100:
        raise ValueError(f"{kind} {name!r} must be dotted words of letters, digits, _ and -")
    return name


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    user = f"{parts.username}@" if parts.username else ""
    return f"{parts.scheme}://{user}{host}{parts.path}"


def _parameters(url: str, namespace: str) -> pika.URLParameters:
    try:
        params = pika.URLParameters(url)
    except Exception as exc:  # pika raises several types for one malformed URL
        raise ConfigError(
            f"HUBSPOKE_RABBITMQ_URL {_without_password(url)!r} is not an AMQP URL"
            f" (amqp://user:password@host:5672/vhost): {exc}"
        ) from None
    given = parse_qs(urlsplit(url).query)
    # A broker that is down should fail fast and once; the relay and consumer retry themselves.
    if "connection_attempts" not in given:
        params.connection_attempts = 1
    if "socket_timeout" not in given:
        params.socket_timeout = 5
    if "blocked_connection_timeout" not in given:
        # A broker in a memory or disk alarm blocks publishers; fail instead of hanging forever.
        params.blocked_connection_timeout = 60
    params.client_properties = {"connection_name": f"hubspoke {namespace} pid {os.getpid()}"}
    return params


def _reason(exc: BaseException) -> str:
    """The innermost useful cause of a pika error (they nest the socket error in tuples)."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    if isinstance(exc, pika.exceptions.ConnectionClosed):
        return f"{exc.reply_text} ({exc.reply_code})"
    inner = getattr(exc, "exception", None)  # pika's connection workflow wraps the cause here
    if isinstance(inner, BaseException):
        return _reason(inner)
    for arg in exc.args:
        if isinstance(arg, BaseException):
            return _reason(arg)
    return str(exc) or type(exc).__name__
