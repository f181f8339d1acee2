"""One trace id per request, carried with its effects: a remote open's command frame takes
it through Redis to whichever hub process holds the bridge, and to the bridge
(docs/operations.md, "Tracing").

Built on the OpenTelemetry API. Without an SDK (the default) spans record nothing, so a
request that continues no trace gets only its id: no span, no OpenTelemetry context (their
objects were a tenth of a bare request's instructions); install opentelemetry-sdk with an
exporter and set it up before the first request (e.g. `opentelemetry-instrument`) to send
spans somewhere. The id is the caller's W3C `traceparent`, else a plain 32-hex
`X-Request-Id`, else a fresh one.
"""

import functools
import random
import re

from opentelemetry import context, propagate, trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, TraceFlags

from gate_bridge import logs

tracer = trace.get_tracer("xiaoqu")
TRACE_ID = re.compile(r"^[0-9a-f]{32}$")


@functools.cache
def _fields(textmap) -> tuple[str, ...]:
    return tuple(textmap.fields)  # (the composite propagator builds the set anew each time)


@functools.cache
def _recording() -> bool:
    """Whether an SDK records spans (set up before the first request, as instrumentation is)."""
    return not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)


def begin(headers, name: str, hint: str = "") -> tuple[str, trace.Span | None]:
    """The request's trace id and, when there is one to record or continue, its span (the
    current one for the rest of its task). `hint`: an X-Request-Id the caller sent."""
    # Most requests carry none of the headers a propagator reads: nothing to extract then.
    sent = any(field in headers for field in _fields(propagate.get_global_textmap()))
    ctx = propagate.extract(headers) if sent else None
    span_context = ctx and trace.get_current_span(ctx).get_span_context()
    if not (span_context and span_context.is_valid):
        trace_id = int(hint, 16) if TRACE_ID.match(hint) and hint.strip("0") else None
        # Ids, not secrets: drawn like the OpenTelemetry SDK's (no system call per request).
        trace_id = trace_id or random.getrandbits(128) or 1
        if not _recording():
            return trace.format_trace_id(trace_id), None
        span_context = SpanContext(trace_id, random.getrandbits(64) or 1, is_remote=True,
                                   trace_flags=TraceFlags(TraceFlags.DEFAULT))
        ctx = trace.set_span_in_context(NonRecordingSpan(span_context), ctx or context.Context())
    if _recording():
        span = tracer.start_span(name, context=ctx, kind=SpanKind.SERVER)
        ctx = trace.set_span_in_context(span, ctx)
    else:
        span = trace.get_current_span(ctx)  # no SDK: what its no-op tracer would return
    # Each request runs in its own asyncio task, whose context ends with it: nothing to detach.
    context.attach(ctx)
    return trace.format_trace_id(span_context.trace_id), span


def traceparent() -> str | None:
    """The current trace as a W3C traceparent, for a frame leaving this process."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    if "traceparent" in carrier:
        return carrier["traceparent"]
    # A trace with no OpenTelemetry context (above): its id, as the request's log lines carry it.
    if trace_id := logs.bound("trace_id"):
        return f"00-{trace_id}-{random.getrandbits(64) or 1:016x}-00"
    return None
