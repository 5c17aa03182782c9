"""Customers: create, list, read, change (a tier change needs a reason and a manager), contacts, history."""

from __future__ import annotations

from fastapi import APIRouter

from api.auth import FunnelDep, UserDep
from api.errors import responses
from api.routes.common import CustomerId, Filter, Limit, Offset
from api.schemas import Tier
from api.schemas_reference import (
    ContactIn,
    ContactOut,
    CustomerEventOut,
    CustomerIn,
    CustomerList,
    CustomerOut,
    CustomerPatch,
)
from engine import customers, permissions

router = APIRouter(prefix="/api/customers", tags=["customers"])


@router.post("", status_code=201, responses=responses(403, 404, 422))
def create(body: CustomerIn, f: FunnelDep, user: UserDep) -> CustomerOut:
    """Create a customer with its tier, region, parent (group) and first contacts."""
    permissions.check_customer_write(user)
    view = customers.create(f, name=body.name, tier=body.tier, actor=user.login, region=body.region,
                            parent_id=body.parent_id, contacts=[c.model_dump() for c in body.contacts])
    return CustomerOut.model_validate(view.to_dict())


@router.get("", responses=responses(422))
def list_customers(f: FunnelDep, user: UserDep, tier: Tier | None = None, region: Filter = None,
                   limit: Limit = 50, offset: Offset = 0) -> CustomerList:
    """Customers by tier and region (case-insensitive), ordered by name; `total` counts all matches."""
    found = customers.find(f, tier=tier, region=region)
    return CustomerList(items=[CustomerOut.model_validate(c.to_dict()) for c in found[offset:offset + limit]],
                        total=len(found), limit=limit, offset=offset)


@router.get("/{customer_id}", responses=responses(404, 422))
def get(customer_id: CustomerId, f: FunnelDep, user: UserDep) -> CustomerOut:
    """A customer with its contacts and direct subsidiaries."""
    return CustomerOut.model_validate(customers.get(f, customer_id).to_dict())


@router.patch("/{customer_id}", responses=responses(403, 404, 409, 422))
def update(customer_id: CustomerId, body: CustomerPatch, f: FunnelDep, user: UserDep) -> CustomerOut:
    """Change name, tier, region or parent. A tier change needs a reason and a manager; it is audited and
    re-tiers the customer's open work."""
    changes = body.model_dump(exclude_unset=True, exclude={"reason", "expected_version"})
    retier = "tier" in changes and changes["tier"] != customers.get(f, customer_id).tier
    permissions.check_customer_write(user, tier_change=retier)
    view = customers.update(f, customer_id, changes, actor=user.login, reason=body.reason,
                            expected_version=body.expected_version)
    return CustomerOut.model_validate(view.to_dict())


@router.post("/{customer_id}/contacts", status_code=201, responses=responses(403, 404, 422))
def add_contact(customer_id: CustomerId, body: ContactIn, f: FunnelDep, user: UserDep) -> ContactOut:
    """Add a contact person (their time zone says when escalation e-mails are read)."""
    permissions.check_customer_write(user)
    view = customers.add_contact(f, customer_id, name=body.name, email=body.email, time_zone=body.time_zone,
                                 actor=user.login, phone=body.phone, role=body.role)
    return ContactOut.model_validate(view, from_attributes=True)


@router.get("/{customer_id}/history", responses=responses(404, 422))
def history(customer_id: CustomerId, f: FunnelDep, user: UserDep) -> list[CustomerEventOut]:
    """Who created and changed the customer (tier changes with their reasons), oldest first."""
    return [CustomerEventOut.model_validate(e.model_dump()) for e in customers.history(f, customer_id)]
