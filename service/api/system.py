"""Liveness and version: open, no token needed."""
from __future__ import annotations

import logging

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from service import __version__
from service.api.deps import SessionDep

logger = logging.getLogger(__name__)
router = APIRouter(tags=["system"])


@router.get("/health")
def health(session: SessionDep) -> JSONResponse:
    try:
        session.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        logger.error("health.database_error %s", type(exc).__name__)
        return JSONResponse({"status": "degraded", "database": "error"}, status_code=503)
    return JSONResponse({"status": "ok", "database": "ok"})


@router.get("/version")
def version() -> dict[str, str]:
    return {"name": "taxbot-service", "version": __version__}
