"""Calendars: weekday sets, holidays, markets, and named calendars."""

from .base import Calendar

__all__ = ["Calendar"]
