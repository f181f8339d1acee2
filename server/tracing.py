"""One trace id per request, carried with its effects: a remote open's command frame takes
it through Redis to whichever hub process holds the bridge, and to the bridge
(docs/operations.md, "Tracing").

Built on the OpenTelemetry API. Without an SDK (the default) spans record nothing and
cost next to nothing, but their ids propagate; install opentelemetry-sdk with an exporter
and set it up (e.g. `opentelemetry-instrument`) to send the spans somewhere. The id is
the caller's W3C `traceparent`, else a plain 32-hex `X-Request-Id`, else a fresh one.
"""

import functools
import random
import re

from opentelemetry import context, propagate, trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, TraceFlags

tracer = trace.get_tracer("xiaoqu")
TRACE_ID = re.compile(r"^[0-9a-f]{32}$")


@functools.lru_cache(maxsize=4)
def _fields(textmap) -> tuple[str, ...]:
    return tuple(textmap.fields)  # (the composite propagator builds the set anew each time)


def begin(headers, name: str, hint: str = "") -> trace.Span:
    """Start the request's span (the current one for the rest of its task)."""
    # Most requests carry none of the headers a propagator reads: nothing to extract then.
    sent = any(field in headers for field in _fields(propagate.get_global_textmap()))
    ctx = propagate.extract(headers) if sent else context.Context()
    if not sent or not trace.get_current_span(ctx).get_span_context().is_valid:
        trace_id = int(hint, 16) if TRACE_ID.match(hint) and hint.strip("0") else None
        # Ids, not secrets: drawn like the OpenTelemetry SDK's (no system call per request).
        parent = SpanContext(trace_id or random.getrandbits(128) or 1,
                             random.getrandbits(64) or 1, is_remote=True,
                             trace_flags=TraceFlags(TraceFlags.DEFAULT))
        ctx = trace.set_span_in_context(NonRecordingSpan(parent), ctx)
    if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        span = trace.get_current_span(ctx)  # no SDK: what its no-op tracer would return
    else:
        span = tracer.start_span(name, context=ctx, kind=SpanKind.SERVER)
        ctx = trace.set_span_in_context(span, ctx)
    # Each request runs in its own asyncio task, whose context ends with it: nothing to detach.
    context.attach(ctx)
    return span


def trace_id(span: trace.Span | None = None) -> str | None:
    """The trace id (32 hex digits) of `span` or of the current span; None outside a trace."""
    span_context = (span or trace.get_current_span()).get_span_context()
    return trace.format_trace_id(span_context.trace_id) if span_context.is_valid else None


def traceparent() -> str | None:
    """The current span as a W3C traceparent, for a frame leaving this process."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier.get("traceparent")

