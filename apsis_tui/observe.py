"""Screens and widgets observing the model: a Textual-side bridge to `model.Topic`.

A callback runs on the node's own message queue (after the messages already queued,
as a Textual signal's does), never inside the worker that fed the model; the
subscription ends by itself once the node is removed from the app.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from textual.dom import DOMNode

from apsis_tui.model import Topic

T = TypeVar("T")


def observe(node: DOMNode, topic: Topic[T], callback: Callable[[T], object]) -> None:
    """Call ``callback`` on ``node``'s queue with each value ``topic`` publishes."""
    topic.subscribe(lambda value: node.call_next(callback, value),
                    alive=lambda: node.is_running and node.is_attached)
