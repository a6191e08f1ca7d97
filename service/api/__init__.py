"""HTTP routers. Everything under /api/v1 requires the service bearer token."""
from fastapi import APIRouter, Depends

from service.api import handoffs, identity, knowledge, records, system, tickets
from service.api.deps import require_service_token

api_v1 = APIRouter(prefix="/api/v1", dependencies=[Depends(require_service_token)])
for module in (identity, records, tickets, handoffs, knowledge):
    api_v1.include_router(module.router)

__all__ = ["api_v1", "system"]
