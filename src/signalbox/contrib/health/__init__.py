"""The health of the outbox as JSON, for load balancers and uptime monitors.

Include :mod:`signalbox.contrib.health.urls` in the project's URLconf::

    path("signalbox/health/", include("signalbox.contrib.health.urls"))

``GET`` answers ``200`` when every check of :mod:`signalbox.health` passes
and ``503`` when one fails, with :meth:`~signalbox.health.Health.as_dict` as
the body (names, figures and limits: nothing from a payload). Only staff
(logged in, through the session) and callers presenting
``Authorization: Bearer <HEALTH_TOKEN>`` may ask; others get ``401``
(no credentials, or a wrong token) or ``403`` (logged in, not staff).
"""

from __future__ import annotations

import hmac

from django.db import DEFAULT_DB_ALIAS
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from signalbox import conf, health


@never_cache
@require_safe
def health_view(request: HttpRequest, using: str = DEFAULT_DB_ALIAS) -> HttpResponse:
    """The checks of :func:`signalbox.health.check` on database ``using``:
    200 when healthy, 503 when not; 401 or 403 for callers neither staff nor
    holding the token. A URL pattern may pass ``using`` as an extra kwarg."""
    refused = _refusal(request)
    if refused is not None:
        return refused
    verdict = health.check(using=using)
    return JsonResponse(verdict.as_dict(), status=200 if verdict.healthy else 503)


def _refusal(request: HttpRequest) -> HttpResponse | None:
    """Why ``request`` may not see the checks, as a response; None if it may.

    A request that presents a token is judged by it alone (a wrong one is
    refused even with a staff session: the caller meant the token).
    """
    presented = request.headers.get("Authorization", "")
    if presented:
        scheme, _, token = presented.partition(" ")
        expected = conf.get().health_token
        if (
            scheme.lower() == "bearer"
            and expected
            # Constant time, so the answer's timing tells nothing of the token.
            and hmac.compare_digest(token.strip().encode(), expected.encode())
        ):
            return None
        return _unauthorized("The bearer token is wrong, or no token is configured.")
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return _unauthorized("Log in as staff, or send Authorization: Bearer TOKEN.")
    if not (user.is_active and user.is_staff):
        return JsonResponse({"error": "Staff only."}, status=403)
    return None


def _unauthorized(message: str) -> HttpResponse:
    response = JsonResponse({"error": message}, status=401)
    response["WWW-Authenticate"] = 'Bearer realm="signalbox health"'
    return response
