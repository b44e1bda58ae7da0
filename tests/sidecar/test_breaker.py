"""The circuit breaker in front of OPA: open after failures, one trial after the cool-off."""

from __future__ import annotations

import threading
import time

from sidecar.breaker import CircuitBreaker


def test_closed_until_the_failures_in_a_row_are_reached():
    breaker = CircuitBreaker(failures=2, cool_off=60)
    assert breaker.allow()
    breaker.failure()
    assert breaker.allow() and not breaker.is_open
    breaker.success()  # a success in between resets the count
    breaker.failure()
    assert breaker.allow()
    breaker.failure()
    assert breaker.is_open and not breaker.allow()


def test_after_the_cool_off_exactly_one_trial_goes_through():
    breaker = CircuitBreaker(failures=1, cool_off=0.05)
    breaker.failure()
    assert not breaker.allow()
    time.sleep(0.06)
    granted = []
    threads = [threading.Thread(target=lambda: granted.append(breaker.allow())) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert granted.count(True) == 1


def test_a_failed_trial_opens_again_and_a_successful_one_closes():
    breaker = CircuitBreaker(failures=3, cool_off=0.05)
    for _ in range(3):
        breaker.failure()
    time.sleep(0.06)
    assert breaker.allow()
    breaker.failure()  # one failure is enough while half-open
    assert not breaker.allow()
    time.sleep(0.06)
    assert breaker.allow()
    breaker.success()
    assert not breaker.is_open and breaker.allow() and breaker.allow()


def test_an_inconclusive_trial_keeps_it_open_and_frees_the_trial():
    breaker = CircuitBreaker(failures=1, cool_off=0.05)
    breaker.failure()
    time.sleep(0.06)
    assert breaker.allow()
    breaker.inconclusive()
    assert not breaker.allow()
    time.sleep(0.06)
    assert breaker.allow()


def test_inconclusive_when_closed_changes_nothing():
    breaker = CircuitBreaker()
    breaker.inconclusive()
    assert not breaker.is_open and breaker.allow()
