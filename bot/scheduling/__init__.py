"""Scheduled work: durable jobs on apscheduler, and the jobs kefu runs on a clock."""

from bot.scheduling.scheduler import Handler, Scheduler

__all__ = ["Handler", "Scheduler"]
