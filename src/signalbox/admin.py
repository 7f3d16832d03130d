"""The Django admin for the outbox: deliveries, and the workers that run them.

Deliveries are read here, never edited: no form saves one, and nobody adds or
deletes one by hand. Two actions change them, each through
:mod:`signalbox.outbox` (which owns every transition) and each behind its own
permission:

``retry`` (``signalbox.retry_delivery``)
    Dead and retryable deliveries become available now, with fresh attempts.
``erase_payload`` (``signalbox.erase_delivery_payload``)
    Finished deliveries lose their payload and keep everything else.

An action posted by someone without its permission is refused with 403
rather than quietly ignored. Everything a row holds is shown through
Django's escaping, the payload as indented JSON.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from django.contrib import admin, messages
from django.contrib.admin.utils import flatten_fieldsets
from django.core.exceptions import PermissionDenied
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.text import Truncator
from django.utils.translation import ngettext

from signalbox import conf, outbox
from signalbox.models import Delivery, WorkerRecord

if TYPE_CHECKING:
    _DeliveryAdmin = admin.ModelAdmin[Delivery]
    _WorkerRecordAdmin = admin.ModelAdmin[WorkerRecord]
else:  # ModelAdmin takes no type parameter at runtime
    _DeliveryAdmin = _WorkerRecordAdmin = admin.ModelAdmin


class _ReadOnly:
    """Rows that only signalbox writes: shown, never added, edited or deleted."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Delivery)
class DeliveryAdmin(_ReadOnly, _DeliveryAdmin):
    """Deliveries by state, queue, receiver and reason; retry and erase actions."""

    list_display = (
        "id",
        "state",
        "receiver",
        "queue",
        "attempts",
        "enqueued_at",
        "finished_at",
        "reason",
        "last_error",
    )
    list_filter = (
        "state",
        "queue",
        "receiver",
        "reason",
        ("payload_erased_at", admin.EmptyFieldListFilter),
    )
    search_fields = ("receiver",)
    search_help_text = "A receiver key (or part of one), or a delivery id."
    ordering = ("-id",)
    show_full_result_count = False  # a count(*) of the whole outbox on every page
    actions = ("retry", "erase_payload")
    fieldsets = (
        (
            None,
            {"fields": ("id", "signal", "receiver", "queue", "priority", "state")},
        ),
        ("Outcome", {"fields": ("reason", "error_text")}),
        (
            "Times",
            {
                "fields": (
                    "attempts",
                    "interrupted",
                    "enqueued_at",
                    "scheduled_at",
                    "attempted_at",
                    "finished_at",
                    "leased_by",
                    "lease_expires_at",
                )
            },
        ),
        ("Payload", {"fields": ("payload_text", "payload_erased_at")}),
    )
    readonly_fields = flatten_fieldsets(fieldsets)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Delivery]:
        """Every delivery, without its payload until a page asks for it."""
        # A list page of a hundred rows need not carry a hundred payloads.
        return super().get_queryset(request).defer("payload")

    def has_retry_permission(self, request: HttpRequest) -> bool:
        """Whether the user may run the retry action."""
        return request.user.has_perm("signalbox.retry_delivery")

    def has_erase_permission(self, request: HttpRequest) -> bool:
        """Whether the user may run the erase-payload action."""
        return request.user.has_perm("signalbox.erase_delivery_payload")

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        """The list; a posted action the user may not run raises PermissionDenied."""
        if request.method == "POST":
            allowed = self.get_actions(request)
            # Django would drop such an action and answer "No action
            # selected"; a refusal is what the user and the logs should see.
            if any(
                name and name not in allowed for name in request.POST.getlist("action")
            ):
                raise PermissionDenied
        return super().changelist_view(request, extra_context)

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Delivery], search_term: str
    ) -> tuple[QuerySet[Delivery], bool]:
        """Receivers whose key contains the term, and the delivery the term numbers."""
        found, duplicates = super().get_search_results(request, queryset, search_term)
        term = search_term.strip()
        if term.isascii() and term.isdigit() and int(term) < 2**63:
            found |= queryset.filter(pk=int(term))
        return found, duplicates

    @admin.action(
        permissions=["retry"],
        description="Retry the selected dead or retryable deliveries now",
    )
    def retry(self, request: HttpRequest, queryset: QuerySet[Delivery]) -> None:
        """Make the selected dead and retryable deliveries available, attempts reset."""
        selected = queryset.count()
        changed = outbox.retry(Q(pk__in=queryset.values("pk")), using=queryset.db)
        self.message_user(
            request,
            ngettext(
                "%(changed)d of %(selected)d selected delivery is available again, "
                "with fresh attempts.",
                "%(changed)d of %(selected)d selected deliveries are available "
                "again, with fresh attempts.",
                selected,
            )
            % {"changed": changed, "selected": selected}
            + _left_alone(selected - changed, "not dead or retryable, or erased"),
            messages.SUCCESS if changed else messages.WARNING,
        )

    @admin.action(
        permissions=["erase"],
        description="Erase the payload of the selected finished deliveries",
    )
    def erase_payload(self, request: HttpRequest, queryset: QuerySet[Delivery]) -> None:
        """Erase the payloads of the selected finished deliveries, keeping the rows."""
        selected = queryset.count()
        changed = outbox.erase_payloads(
            Q(pk__in=queryset.values("pk")), using=queryset.db
        )
        self.message_user(
            request,
            ngettext(
                "Erased the payload of %(changed)d of %(selected)d selected "
                "delivery; its row is kept.",
                "Erased the payload of %(changed)d of %(selected)d selected "
                "deliveries; their rows are kept.",
                selected,
            )
            % {"changed": changed, "selected": selected}
            + _left_alone(selected - changed, "not finished, or erased already"),
            messages.SUCCESS if changed else messages.WARNING,
        )

    @admin.display(description="attempts", ordering="attempt")
    def attempts(self, delivery: Delivery) -> str:
        """Attempts made, of the most allowed."""
        return f"{delivery.attempt}/{delivery.max_attempts}"

    @admin.display(description="last error")
    def last_error(self, delivery: Delivery) -> str:
        """The error's last line (the exception), shortened for the list."""
        lines = [line for line in delivery.error.splitlines() if line.strip()]
        return Truncator(lines[-1] if lines else "").chars(80)

    @admin.display(description="error")
    def error_text(self, delivery: Delivery) -> SafeString | str:
        """The last error with its traceback, escaped, in <pre>."""
        if not delivery.error:
            return self.get_empty_value_display()
        return format_html("<pre>{}</pre>", delivery.error)

    @admin.display(description="payload")
    def payload_text(self, delivery: Delivery) -> SafeString | str:
        """The encoded sender and arguments as indented JSON, escaped, in <pre>."""
        if delivery.payload_erased_at is not None:
            return "(erased)"
        text = json.dumps(
            delivery.payload, indent=2, sort_keys=True, ensure_ascii=False
        )
        return format_html("<pre>{}</pre>", text)


def _left_alone(count: int, why: str) -> str:
    return f" Left alone: {count} ({why})." if count else ""


@admin.register(WorkerRecord)
class WorkerRecordAdmin(_ReadOnly, _WorkerRecordAdmin):
    """The workers that reported lately, with the receiver keys each can run."""

    list_display = ("name", "live", "queue_names", "receiver_count", "seen_at")
    search_fields = ("name",)
    ordering = ("name",)
    fields = (
        "name",
        "live",
        "queue_names",
        "receiver_keys",
        "started_at",
        "seen_at",
    )
    readonly_fields = fields

    @admin.display(boolean=True, description="live")
    def live(self, record: WorkerRecord) -> bool:
        """Seen within two leases: what ``signalbox status`` counts as running."""
        return timezone.now() - record.seen_at < conf.get().lease * 2

    @admin.display(description="queues")
    def queue_names(self, record: WorkerRecord) -> str:
        """The queues the worker claims from."""
        return ", ".join(map(str, record.queues))

    @admin.display(description="receivers")
    def receiver_count(self, record: WorkerRecord) -> int:
        """How many receiver keys the worker can run."""
        return len(record.receivers)

    @admin.display(description="receiver keys")
    def receiver_keys(self, record: WorkerRecord) -> SafeString:
        """Every receiver key the worker can run, one a line, escaped."""
        return format_html("<pre>{}</pre>", "\n".join(map(str, record.receivers)))
