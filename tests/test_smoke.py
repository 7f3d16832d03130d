from signalbox import Signal


def test_send_reaches_receiver() -> None:
    seen = []

    def handler(sender, **kwargs):
        seen.append(kwargs)

    signal = Signal()
    signal.connect(handler)
    signal.send(sender=None, x=1)
    assert seen == [{"x": 1, "signal": signal}]
