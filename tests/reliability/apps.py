from __future__ import annotations

import faulthandler
import os
import signal

from django.apps import AppConfig


class ReliabilityConfig(AppConfig):
    name = "tests.reliability"
    label = "reliability"

    def ready(self) -> None:
        # The receivers every worker process runs, and (when asked) the
        # tripwires that record forbidden calls in a worker.
        from tests.reliability import receivers, tripwires

        receivers.connect_late_receivers()
        tripwires.install()
        if os.environ.get("SIGNALBOX_REL_WORKER"):
            # `kill -USR2 <pid>` writes every thread's stack to the worker's log.
            faulthandler.register(signal.SIGUSR2, all_threads=True)
