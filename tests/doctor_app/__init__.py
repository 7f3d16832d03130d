"""A sample project for ``signalbox doctor``: ``seeded`` has every
anti-pattern the doctor reads from code, ``clean`` the same receivers done
right. Neither connects anything at import: a test's fixture calls their
``connect_all()`` and disconnects at teardown, so no other test sees them."""
