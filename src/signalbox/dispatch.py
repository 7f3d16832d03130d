"""signalbox's Signal, and connecting receivers that choose how they run.

:class:`Signal` is a drop-in subclass of :class:`django.dispatch.Signal`: the
same methods, arguments, return values and errors, in Django 5.2 and 6.x. It
adds two things, both in how it sends (:mod:`signalbox._sending`): every
receiver call is timed (see :mod:`signalbox.observe`), and the receivers a
sender reaches are remembered between sends, which more than pays for the
timing. This module is the connecting side.

:func:`receiver` and :func:`connect` connect a receiver to *any* Django
signal with ``run=`` saying how it runs. A plain inline receiver on a
signalbox signal is connected as it is; anything else is connected through a
small adapter (:mod:`signalbox._adapters`) that Django's own bookkeeping
treats exactly as it would the receiver, so ``disconnect(receiver)`` and
duplicate detection behave as Django's do.
"""

from __future__ import annotations

import sys
import weakref
from collections.abc import Callable, Hashable, Sequence
from typing import Any, TypeVar

from django.conf import settings
from django.dispatch import Signal as DjangoSignal
from django.utils.inspect import func_accepts_kwargs

from signalbox import _compat, _held, _modes, registry
from signalbox._adapters import Adapter
from signalbox._modes import MODES
from signalbox._routes import Receiver
from signalbox._sending import SendingSignal
from signalbox.registry import ReceiverInfo, Run

F = TypeVar("F", bound=Callable[..., Any])


class Signal(SendingSignal):
    """A drop-in replacement for :class:`django.dispatch.Signal`.

    Every documented behaviour of Django's class holds unchanged. In addition
    ``connect()`` takes ``run=`` (see :func:`connect`), and each receiver call
    is timed: a receiver slower than ``SIGNALBOX["SLOW_RECEIVER_MS"]`` logs a
    warning, and a synchronous :meth:`send` that holds a running event loop
    longer than ``SIGNALBOX["LOOP_BLOCK_MS"]`` logs which receivers did it.
    (How it sends is :class:`signalbox._sending.SendingSignal`'s.)
    """

    def __init__(self, use_caching: bool = False) -> None:
        super().__init__(use_caching=use_caching)
        self.defined_in = _caller_module()
        """The module that created this signal, which names it in logs and rows."""
        self._start()

    def _start(self) -> None:
        """Set up what signalbox adds to Django's state (also for a signal
        whose class was swapped to this one after it was made)."""
        super()._start()
        # Weak: the adapter must live exactly as long as its receiver.
        self._adapters: weakref.WeakValueDictionary[
            tuple[Hashable, Hashable], Adapter
        ] = weakref.WeakValueDictionary()

    # -- connecting ---------------------------------------------------------

    def connect(
        self,
        receiver: Receiver,
        sender: object = None,
        weak: bool = True,
        dispatch_uid: Hashable = None,
        *,
        run: Run = "inline",
        **options: Any,
    ) -> None:
        """Connect ``receiver`` as Django does; ``run=`` chooses how it runs.

        See :func:`connect` for the modes and their options.
        """
        connect(
            self,
            receiver,
            sender=sender,
            weak=weak,
            dispatch_uid=dispatch_uid,
            run=run,
            **options,
        )

    def disconnect(
        self,
        receiver: Receiver | None = None,
        sender: object = None,
        dispatch_uid: Hashable = None,
    ) -> bool:
        """Disconnect as Django does; return whether a receiver was disconnected."""
        adapter = None
        if self._adapters or receiver is None:
            key = (dispatch_uid or _compat.make_id(receiver), _compat.make_id(sender))
            adapter = self._adapters.pop(key, None)
        connected = adapter if adapter is not None else receiver
        if connected is None:  # by dispatch_uid alone: what does Django hold?
            connected = _held.held_for(self, key)
        disconnected = super().disconnect(receiver, sender, dispatch_uid)
        self._forget_routes()
        if disconnected:
            for entry in registry.registry.forget(self, connected):
                if MODES[entry.info.run].batched:
                    self._background = _batched(self)
        if adapter is not None:
            adapter.release()
        return disconnected

    def _connect_directly(
        self,
        receiver: Receiver,
        sender: object,
        weak: bool,
        dispatch_uid: Hashable,
    ) -> None:
        super().connect(receiver, sender, weak, dispatch_uid)
        self._forget_routes()
        if isinstance(receiver, Adapter):
            self._adapters.setdefault(
                (dispatch_uid or _compat.make_id(receiver), _compat.make_id(sender)),
                receiver,
            )


def receiver(
    signal: DjangoSignal | Sequence[DjangoSignal],
    *,
    sender: object = None,
    run: Run = "inline",
    dispatch_uid: Hashable = None,
    weak: bool = True,
    **options: Any,
) -> Callable[[F], F]:
    """Decorate a function to connect it to one signal or a list of signals.

    Works with any :class:`django.dispatch.Signal`, Django's own included.
    Takes the arguments of :func:`connect`; returns the function unchanged.
    """

    def decorator(func: F) -> F:
        signals = [signal] if isinstance(signal, DjangoSignal) else list(signal)
        for each in signals:
            connect(
                each,
                func,
                sender=sender,
                weak=weak,
                dispatch_uid=dispatch_uid,
                run=run,
                **options,
            )
        return func

    return decorator


def connect(
    signal: DjangoSignal,
    receiver: Receiver,
    *,
    sender: object = None,
    weak: bool = True,
    dispatch_uid: Hashable = None,
    run: Run = "inline",
    **options: Any,
) -> None:
    """Connect ``receiver`` to ``signal`` (any Django signal) and say how it runs.

    ``run="inline"`` (the default) calls it during ``send()``, exactly as
    Django does. ``run="on_commit"`` calls it once the transaction around the
    ``send()`` commits (at once outside a transaction, never after a
    rollback); the database is the ``using`` argument that model signals
    carry, else the default one; its exceptions are logged, never raised.
    Coroutine receivers work in every mode.

    Deferred receivers may say what of a send reaches them: ``prepare=`` (a
    function called in ``send()`` with the signal's keyword arguments and
    ``sender``, returning the keyword arguments to pass on) and ``exclude=``
    (argument names to drop), in both deferred modes; ``snapshot=False``
    (model instances travel without a copy of their fields) for background
    receivers only.

    ``sender``, ``weak`` and ``dispatch_uid`` mean what they mean to Django.
    Whatever the mode, the receiver lives exactly as long as it would have
    with Django's ``connect``. Raises :class:`~signalbox.ReceiverError` for an
    unknown mode or option, or a receiver the mode cannot run.
    """
    run, row = _modes.mode(run)
    info = _modes.describe(signal, receiver, sender, dispatch_uid, run, row, options)
    if row.direct and isinstance(signal, Signal):
        signal._connect_directly(receiver, sender, weak, dispatch_uid)
        uid = dispatch_uid or _compat.make_id(receiver)
        _remember(signal, receiver, receiver, sender, uid, weak, info)
        return
    _check_callable(receiver)
    registry.registry.check(signal, receiver, info)
    if row.keyed:
        weak = False  # rows may name it long after its module let go of it
    # A receiver that says nothing about what travels gets the plain adapter,
    # so it pays nothing for the option.
    adapter_class = row.adapter.fitting(receiver, info)
    adapter = adapter_class(receiver, weak=weak, info=info)
    # Django identifies a connection by (dispatch_uid or id(receiver), sender).
    # Passing the receiver's own id as the uid gives the adapter the identity
    # the receiver would have had: disconnect(receiver) finds it, and a second
    # connect of the same receiver is ignored, as with Django.
    uid = dispatch_uid or _compat.make_id(receiver)
    try:
        if isinstance(signal, Signal):
            signal._connect_directly(adapter, sender, weak, uid)
        else:
            signal.connect(adapter, sender=sender, weak=weak, dispatch_uid=uid)
    except BaseException:
        adapter.release()
        raise
    _remember(signal, adapter, receiver, sender, uid, weak, info)


def _remember(
    signal: DjangoSignal,
    connected: Receiver,
    receiver: Receiver,
    sender: object,
    uid: Hashable,
    weak: bool,
    info: ReceiverInfo,
) -> None:
    """Record a connection in the registry, if Django kept it.

    Django silently ignores a connection whose (dispatch_uid or receiver,
    sender) is taken; such a receiver must be neither listed nor kept.
    """
    if not isinstance(signal, Signal):
        _sweep(signal, receiver)
    if _held.kept(signal, connected, sender, uid):
        # Held as the signal holds it, when the signal tells us of its
        # disconnect; weakly on another signal, which does not.
        weak = weak or not isinstance(signal, Signal)
        registry.registry.record(signal, connected, receiver, sender, info, weak=weak)
        if isinstance(signal, Signal) and MODES[info.run].batched:
            signal._background = _batched(signal)
    elif isinstance(connected, Adapter):
        connected.release()


def disconnect(
    signal: DjangoSignal,
    receiver: Receiver | None = None,
    sender: object = None,
    dispatch_uid: Hashable = None,
) -> bool:
    """Disconnect from any signal, as ``signal.disconnect()`` does.

    Returns whether a receiver was disconnected. On a signal that is not
    signalbox's, ``signal.disconnect()`` works too, but signalbox only hears
    of it at the receiver's next connect or death; this lets go of the
    adapter at once.
    """
    disconnected = bool(signal.disconnect(receiver, sender, dispatch_uid))
    if not isinstance(signal, Signal):
        _sweep(signal, receiver)
    return disconnected


def _sweep(signal: DjangoSignal, receiver: Receiver | None) -> None:
    """Let go of this receiver's adapters that were disconnected behind our back.

    ``post_save.disconnect(f)`` reaches Django, not signalbox, so the adapter
    it removed would live on as long as ``f``; a connect/disconnect cycle
    would grow memory each time round.
    """
    for connected, sender in registry.registry.connections(signal, receiver):
        if isinstance(sender, str):
            continue  # a model signal's lazy sender: connected once the model loads
        if isinstance(connected, Adapter) and not _held.holds(signal, connected):
            registry.registry.forget(signal, connected)
            connected.release()


def _batched(signal: DjangoSignal) -> int:
    """How many receivers of ``signal`` write outbox rows (from two on, a send
    batches them)."""
    return registry.registry.count(
        signal, (run for run, row in MODES.items() if row.batched)
    )


def _check_callable(receiver: Receiver) -> None:
    # Django checks a receiver only when DEBUG is on; an adapter would hide the
    # receiver from that check, so it is made here, on the receiver itself.
    if not callable(receiver):
        raise TypeError("Signal receivers must be callable.")
    if settings.configured and settings.DEBUG and not func_accepts_kwargs(receiver):
        raise ValueError("Signal receivers must accept keyword arguments (**kwargs).")


def _caller_module() -> str | None:
    # The first frame outside the __init__ chain of Signal and its subclasses.
    try:
        frame = sys._getframe(2)
    except ValueError:  # created with no Python caller (a C-level callback)
        return None
    while frame.f_code.co_name == "__init__" and frame.f_back is not None:
        frame = frame.f_back
    return frame.f_globals.get("__name__")
