"""Django's own dispatch and signals test suites, every signal made signalbox's.

``fetch`` gets the suites from the Django sdist of the installed version;
``swap`` turns every ``django.dispatch.Signal`` of the process into a
:class:`signalbox.Signal`; ``run`` runs Django's ``runtests.py`` with both.
"""
