"""The example shop: orders, the ``order_paid`` signal and its receivers."""
