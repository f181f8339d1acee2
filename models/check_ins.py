"""What proves someone was at a tag (a patrol checkpoint, a piece of equipment): the one rule.

A tag's code alone is no proof — anyone can copy or photograph it. A check-in counts only
when it is sent at once (`scanned_at` within CLOCK_SKEW of the server's clock, so a queued
or replayed scan is refused) and it is recorded with who sent it (the signed-in account),
the device and, when the phone gives it, the location. Checklist answers are ok or problem.
"""

from datetime import datetime, timedelta

from models.access import Principal
from models.errors import Invalid
from models.messages import Text

CLOCK_SKEW = timedelta(minutes=2)
ANSWERS = ("ok", "problem")


def tag_payload(prefix: str, code: str) -> str:
    """What a tag's QR code carries: its code, marked with what it is on (`XQCP` a patrol
    checkpoint, `XQEQ` a piece of equipment) so a scanning screen knows its own tags from
    any other QR code; the code alone, typed, is accepted too."""
    return f"{prefix}:{code}"


def proof(principal: Principal, now: datetime, *, device: str, scanned_at: datetime,
          location: dict | None) -> dict:
    """The record of a check-in at `now`, or 400 when the scan is not from now."""
    if abs(now - scanned_at) > CLOCK_SKEW:
        raise Invalid("the scan is not from now: scan the tag again",
                      fields={"scanned_at": Text("within {seconds} s of the server",
                                                    seconds=int(CLOCK_SKEW.total_seconds()))})
    return {"by": principal.id, "device": device, "at": now, "scanned_at": scanned_at,
            "location": location}


def failed_items(answers: dict[str, str]) -> list[str]:
    """The checklist items a check-in found a problem with."""
    return [item for item, answer in answers.items() if answer == "problem"]


def check_answers(answers: dict[str, str], checklist: list[str] | tuple[str, ...], message: str) -> bool:
    """Whether any answer is a problem; 400 (`message`) for an item not on the checklist."""
    if set(answers) - set(checklist) or set(answers.values()) - set(ANSWERS):
        raise Invalid(message, fields={"answers": Text("items: {items}", items=", ".join(checklist))})
    return "problem" in answers.values()
