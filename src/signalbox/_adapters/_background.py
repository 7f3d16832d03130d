"""Background receivers: an outbox row in the sender's transaction, run by a worker."""

from __future__ import annotations

import re
from asyncio.events import _get_running_loop as _running_loop
from collections.abc import Callable
from typing import Any

from django.core.exceptions import SynchronousOnlyOperation

from signalbox import codec, engines, observe, outbox
from signalbox._adapters._base import Adapter, database
from signalbox.engines import _handoff
from signalbox.exceptions import CodecError
from signalbox.policy import Policy
from signalbox.registry import ReceiverInfo


class BackgroundReceiver(Adapter):
    """Writes an outbox row in the sender's transaction; a worker runs the receiver.

    The arguments are encoded now, so a value that cannot travel raises
    :class:`~signalbox.CodecError` in the caller, before anything is written.
    The row goes to the database named by the ``using`` argument that model
    signals carry, else the default one, inside whatever transaction is open
    there: a rollback discards it, the commit hands it to the workers.
    """

    _snapshot = True  # whether model instances travel with their fields

    @classmethod
    def fitting(cls, receiver: Callable[..., Any], info: ReceiverInfo) -> type[Adapter]:
        """The travelling variant for a receiver that said what travels."""
        return TravellingBackgroundReceiver if info.travel is not None else cls

    def __call__(self, signal: object, sender: object, **kwargs: Any) -> None:
        if self._target() is None:
            return
        if _running_loop() is not None:
            raise SynchronousOnlyOperation(
                f"{self.info.key} (run='background') writes an outbox row, which "
                f"Django does not allow on a running event loop: from async "
                f"code, send with `await signal.asend(...)`."
            )
        rows = [self.delivery(signal, sender, kwargs)]
        using = database(kwargs.get("using"))
        if engines.get(rows[0].engine).embedded:
            outbox.enqueue(rows, using=using)
        else:  # its engine is handed the row once the transaction commits
            handover = _handoff.after_commit(rows, using)
            outbox.enqueue(rows, using=using, then=handover, wake=False)

    def delivery(
        self, signal: object, sender: object, kwargs: dict[str, Any]
    ) -> outbox.NewDelivery:
        """The outbox row for one send to this receiver (not yet written)."""
        policy = self.info.policy or Policy()
        name = observe.signal_label(signal)
        key = self.info.key
        try:
            payload = {
                "sender": codec.encode_sender(sender, signal=name, receiver=key),
                "kwargs": codec.encode(
                    kwargs, signal=name, receiver=key, snapshot=self._snapshot
                ),
            }
        except CodecError as error:
            raise _advised(error, self.info) from error.__cause__
        return outbox.NewDelivery(
            signal=name,
            receiver=self.info.key,
            payload=payload,
            engine=policy.engine,
            queue=policy.queue,
            priority=policy.priority,
            max_attempts=policy.max_attempts,
            delay=policy.delay,
        )


class TravellingBackgroundReceiver(BackgroundReceiver):
    """:class:`BackgroundReceiver` for a receiver that said what travels.

    Its ``prepare=`` runs in ``send()``, in the sender's thread, before
    anything is encoded; what it returns, less ``exclude=``, is encoded (with
    or without model snapshots, as ``snapshot=`` says). The row still goes to
    the database the send named.
    """

    def __init__(
        self, receiver: Callable[..., Any], *, weak: bool, info: ReceiverInfo
    ) -> None:
        super().__init__(receiver, weak=weak, info=info)
        assert info.travel is not None  # dispatch builds this class only with one
        self._travel = info.travel
        self._snapshot = info.travel.snapshot

    def delivery(
        self, signal: object, sender: object, kwargs: dict[str, Any]
    ) -> outbox.NewDelivery:
        """The outbox row for one send, carrying what the receiver said travels."""
        sent_by, passed = self._travel.apply(
            sender, kwargs, signal=observe.signal_label(signal), receiver=self.info.key
        )
        return super().delivery(signal, sent_by, passed)


def _advised(error: CodecError, info: ReceiverInfo) -> CodecError:
    """``error``, saying how the receiver can keep the argument from travelling."""
    travel = info.travel
    if travel is not None and travel.prepare is not None:
        advice = "Its prepare= returned it; return what the receiver needs instead."
    else:
        name = re.split(r"[.\[]", error.argument or "", maxsplit=1)[0] or "sender"
        advice = (
            f"If the receiver does not need it, connect it with "
            f"exclude=[{name!r}]; to send what it needs instead (an id, a few "
            f"strings), give it prepare= (docs/background.md, 'What travels')."
        )
    return CodecError(
        f"{error} {advice}",
        signal=error.signal,
        receiver=error.receiver,
        argument=error.argument,
    )
