"""Who may do what, in which community: the one place these decisions are made.

Handlers declare the permission a method needs; `authorize` is what decides.
A community the caller has no part in is reported as not found, so its
existence is not leaked.

A platform admin (the company's own account, made by `python -m server bootstrap`)
acts as an admin in every community and alone holds the PLATFORM_PERMISSIONS,
which are not about one community (creating communities).
"""

from dataclasses import dataclass, field

from models.errors import Forbidden, NotFound
from models.messages import Text

# security_lead: a guard who also starts and ends emergency modes (gates.emergency).
STAFF_ROLES = ("admin", "manager", "customer_service", "security", "security_lead", "maintenance")
ALL_STAFF = frozenset(STAFF_ROLES)
OFFICE = frozenset({"admin", "manager"})

# permission -> staff roles holding it. Residents hold only RESIDENT_PERMISSIONS,
# and only in communities where they have an active room link.
PERMISSIONS: dict[str, frozenset[str]] = {
    "community.read": ALL_STAFF,
    "community.write": frozenset({"admin"}),
    # The building → unit → room directory, without anything about who lives there:
    # residents may browse it in any community, to find the room they ask to be bound to.
    "places.browse": ALL_STAFF,
    "places.read": ALL_STAFF,
    "places.write": OFFICE,
    "gates.read": ALL_STAFF,
    "gates.write": OFFICE,
    "residents.read": frozenset({"admin", "manager", "customer_service", "security", "security_lead"}),
    "staff.read": OFFICE,
    # Dispatchers pick a worker from a list: names and roles only, no account details.
    "staff.assignable": frozenset({"admin", "manager", "customer_service"}),
    "staff.write": frozenset({"admin"}),
    "bindings.read": frozenset({"admin", "manager", "customer_service"}),
    "bindings.decide": frozenset({"admin", "manager", "customer_service"}),
    "import": OFFICE,
    # Tickets: anyone on staff sees them and may be assigned one; residents see their own
    # (the ticket manager's query enforces "own").
    "tickets.read": ALL_STAFF,
    "tickets.create": frozenset({"admin", "manager", "customer_service"}),
    "tickets.work": ALL_STAFF,
    "tickets.dispatch": frozenset({"admin", "manager", "customer_service"}),
    "tickets.followup": frozenset({"admin", "manager", "customer_service"}),
    "sla.read": ALL_STAFF,
    "sla.write": OFFICE,
    "kpi.read": frozenset({"admin", "manager", "customer_service"}),
    # Notices and surveys (models/notices.py, models/surveys.py): all staff read them;
    # the office writes them and sees who has read or answered. Residents read the
    # published ones addressed to them and answer surveys.
    "notices.read": ALL_STAFF,
    "notices.write": frozenset({"admin", "manager", "customer_service"}),
    "surveys.read": ALL_STAFF,
    "surveys.write": frozenset({"admin", "manager", "customer_service"}),
    # Decoration permits (models/decoration.py): residents apply for rooms they own and
    # see their own; the office decides, inspectors (guards, maintenance) inspect and
    # may suspend on a violation.
    "decoration.read": ALL_STAFF,
    "decoration.manage": OFFICE | {"customer_service"},
    "decoration.inspect": frozenset({"admin", "manager", "security", "security_lead", "maintenance"}),
    # Patrols (models/patrols.py): everyone on staff sees rounds; the office and the security
    # lead set checkpoints, routes and plans; guards and technicians check in.
    "patrols.read": ALL_STAFF,
    "patrols.manage": frozenset({"admin", "manager", "security_lead"}),
    "patrols.check_in": frozenset({"admin", "manager", "security", "security_lead", "maintenance"}),
    # A problem found on a round or an inspection becomes a repair ticket: whoever found it
    # (the patrol and equipment managers check that), or the office and dispatch desk.
    "findings.ticket": frozenset({"admin", "manager", "customer_service", "security_lead"}),
    # Equipment (models/equipment.py): everyone on staff reads the register; the office keeps
    # it; guards and technicians inspect (the plans: guards check fire equipment, technicians
    # maintain it); technicians and the office put a repaired item back in service.
    "equipment.read": ALL_STAFF,
    "equipment.manage": OFFICE,
    "equipment.inspect": frozenset({"admin", "manager", "security", "security_lead", "maintenance"}),
    "equipment.repair": frozenset({"admin", "manager", "maintenance"}),
    # Gates: security, managers and admins open remotely (with a reason, audited).
    # Residents hold "gates.open" too; the gate manager limits them to gates
    # covering their own rooms.
    "gates.open": frozenset({"admin", "manager", "security", "security_lead"}),
    # Emergency modes (lockdown, fire release) per gate or community: managers and the
    # security lead; ordinary guards see them (gates.read) but do not start or end them.
    "gates.emergency": frozenset({"admin", "manager", "security_lead"}),
    "alarms.read": frozenset({"admin", "manager", "security", "security_lead"}),
    "alarms.manage": frozenset({"admin", "manager", "security", "security_lead"}),
    # Sending someone to an alarm (the gatehouse guard sends a patrolling one).
    "alarms.dispatch": frozenset({"admin", "manager", "security", "security_lead"}),
    "access_log.read": frozenset({"admin", "manager", "security", "security_lead"}),
    # Passes (models/passes.py): every staff member may show a staff code; residents
    # get their room code and manage their own invitations.
    "passes.code": ALL_STAFF,
    "invitations.manage": frozenset(),
    "passes.read": frozenset({"admin", "manager", "customer_service", "security", "security_lead"}),
    "passes.issue": frozenset({"admin", "manager", "customer_service"}),
    "passes.walkin": frozenset({"admin", "manager", "security", "security_lead"}),
    "passes.revoke": frozenset({"admin", "manager", "customer_service", "security", "security_lead"}),
    "gates.check": frozenset({"admin", "manager", "security", "security_lead"}),
}
RESIDENT_PERMISSIONS = frozenset({"community.read", "bindings.read", "bindings.decide",
                                  "tickets.read", "tickets.create", "gates.open",
                                  "passes.code", "invitations.manage", "notices.read",
                                  "surveys.read", "decoration.read"})
# Held by every resident in every community, linked or not.
OPEN_TO_RESIDENTS = frozenset({"places.browse"})
# Not about one community: platform admins only.
PLATFORM_PERMISSIONS = frozenset({"communities.create"})
PLATFORM_ROLES = frozenset({"admin"})  # what a platform admin holds in every community


@dataclass(frozen=True)
class Principal:
    """The authenticated caller, as proven by an access token."""

    kind: str  # "staff" or "resident"
    id: str
    # staff: community id -> roles there; residents: filled from active room links.
    roles: dict[str, frozenset[str]] = field(default_factory=dict)
    # residents: their active room links as read when the token was checked, so a
    # request needs no second lookup (e.g. issuing a gate code)
    links: tuple[dict, ...] = field(default=(), compare=False)
    # when the access token stops being valid (seconds since the epoch, app clock)
    expires: float = field(default=float("inf"), compare=False)
    platform_admin: bool = False

    @property
    def is_staff(self) -> bool:
        return self.kind == "staff"

    def communities(self) -> set[str]:
        return set(self.roles)


def roles_in(principal: Principal, community_id: str) -> frozenset[str] | None:
    """The caller's roles (staff) or relations (residents) in a community; None: no part in it."""
    roles = principal.roles.get(community_id)
    if principal.platform_admin:
        return (roles or frozenset()) | PLATFORM_ROLES
    return roles


def permitted(principal: Principal, community_id: str, permission: str) -> bool:
    if not principal.is_staff and permission in OPEN_TO_RESIDENTS:
        return True
    roles = roles_in(principal, community_id)
    if roles is None:
        return False
    if principal.is_staff:
        return bool(roles & PERMISSIONS[permission])
    return permission in RESIDENT_PERMISSIONS


def permissions_in(principal: Principal, community_id: str) -> list[str]:
    """Every permission the caller holds in the community (so a page shows only those controls)."""
    return sorted(p for p in PERMISSIONS if permitted(principal, community_id, p))


def authorize(principal: Principal, community_id: str | None, permission: str) -> None:
    """Raise unless the caller holds `permission` in `community_id` (None: a platform permission).

    A caller allowed in a community they have no roles in (a platform admin, a resident
    browsing rooms) must still be answered 404 for one that does not exist:
    `must_confirm_community` says when the caller has to look it up."""
    if community_id is None:
        if permission not in PLATFORM_PERMISSIONS:
            raise KeyError(f"undeclared platform permission {permission!r}")
        if not principal.platform_admin:
            raise Forbidden(Text("{permission} is for platform admins", permission=permission))
        return
    if permission not in PERMISSIONS:
        raise KeyError(f"undeclared permission {permission!r}")
    if permitted(principal, community_id, permission):
        return
    if roles_in(principal, community_id) is None:
        raise NotFound("community not found")
    raise Forbidden(Text("{permission} is not allowed for your role here", permission=permission))


def may_manage_account(principal: Principal, member_roles: dict[str, list[str]]) -> bool:
    """A staff account spans communities: disabling it is for whoever administers all of them."""
    return principal.platform_admin or principal.is_staff and bool(member_roles) and all(
        permitted(principal, cid, "staff.write") for cid in member_roles)


def must_confirm_community(principal: Principal, community_id: str) -> bool:
    """Allowed without any roles there: the community's existence is still to be checked."""
    return community_id not in principal.roles


def holders(permission: str) -> str:
    """Who holds a permission, in words (for the API document)."""
    if permission in PLATFORM_PERMISSIONS:
        return "platform admins"
    who = []
    if roles := PERMISSIONS[permission]:
        who.append("staff there with the role " + " or ".join(sorted(roles)))
    if permission in OPEN_TO_RESIDENTS:
        who.append("any resident")
    elif permission in RESIDENT_PERMISSIONS:
        who.append("residents with a room there")
    return "; ".join([*who, "platform admins"])


def visible_communities(principal: Principal) -> set[str] | None:
    """The communities a caller may list; None: all of them (platform admins, and residents
    choosing where to ask for a room)."""
    if principal.platform_admin or not principal.is_staff:
        return None
    return principal.communities()
