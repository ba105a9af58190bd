"""The messages of a scaled setup, on Dramatiq with Redis.

Two queues: `archiver-discover` (one message per outlet pass: fetch its feeds, sitemaps and
pages, add candidates to the frontier) and `archiver-fetch` (one message per frontier row).
Messages are acknowledged after the task ends, so a worker that dies leaves its messages
unacknowledged; once its heartbeat is `scale.requeue_after` seconds old, the broker gives
them to the other workers. Every task is safe to run twice (see frontier.py).
"""

from __future__ import annotations

import threading
import time
from typing import Callable

from dramatiq import Actor, Message
from dramatiq.brokers.redis import RedisBroker

DISCOVER_QUEUE = "archiver-discover"
FETCH_QUEUE = "archiver-fetch"
DISCOVER_ACTOR = "archiver_discover"
FETCH_ACTOR = "archiver_fetch"
NAMESPACE = "archiver"


def make_broker(url: str, requeue_after: float) -> RedisBroker:
    # maintenance (requeueing the messages of dead workers) runs on ~10% of broker calls
    # instead of 1%: a setup with few, mostly idle workers makes few calls
    return RedisBroker(url=url, namespace=NAMESPACE, heartbeat_timeout=int(requeue_after * 1000),
                       maintenance_chance=10_000)


def send_discover(broker: RedisBroker, outlet: str, pass_id: int) -> None:
    broker.enqueue(Message(queue_name=DISCOVER_QUEUE, actor_name=DISCOVER_ACTOR, args=(outlet, pass_id), kwargs={},
                           options={}))


def send_fetches(broker: RedisBroker, frontier_ids: list[int]) -> None:
    for i in frontier_ids:
        broker.enqueue(Message(queue_name=FETCH_QUEUE, actor_name=FETCH_ACTOR, args=(i,), kwargs={}, options={}))


def declare(broker: RedisBroker, discover: Callable[[str, int], None], fetch: Callable[[int], None]) -> None:
    """Register the worker's task functions under the names the scheduler sends to."""
    # a discovery of a big outlet honouring Crawl-delays takes long; a fetch is bounded by
    # fetch.timeout per hop, so its limit only catches a stuck task
    Actor(discover, broker=broker, actor_name=DISCOVER_ACTOR, queue_name=DISCOVER_QUEUE, priority=0,
          options={"max_retries": 3, "time_limit": 6 * 3600 * 1000, "min_backoff": 5000})
    Actor(fetch, broker=broker, actor_name=FETCH_ACTOR, queue_name=FETCH_QUEUE, priority=10,
          options={"max_retries": 5, "time_limit": 3600 * 1000, "min_backoff": 5000})


def queue_sizes(broker: RedisBroker) -> dict[str, int]:
    """Messages waiting in each queue (not counting those a worker holds)."""
    out = {}
    for q in (DISCOVER_QUEUE, FETCH_QUEUE):
        out[q] = int(broker.client.llen(f"{NAMESPACE}:{q}"))
    return out


class Heartbeat:
    """Keeps this worker's liveness mark fresh while every thread is busy: Dramatiq's Redis
    broker updates it only when a consumer fetches or acknowledges, and a worker whose threads
    all sit in long tasks would otherwise look dead and have its messages given away."""

    def __init__(self, broker: RedisBroker, every: float):
        self._broker, self._every = broker, every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        key = f"{self._broker.namespace}:__heartbeats__"
        while not self._stop.wait(self._every):
            try:
                self._broker.client.zadd(key, {self._broker.broker_id: int(time.time() * 1000)})
            except Exception:  # the broker being away is reported by the consumers themselves
                pass

    def stop(self) -> None:
        self._stop.set()

