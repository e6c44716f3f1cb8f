"""The API router: every resource's router in one place."""

from __future__ import annotations

from fastapi import APIRouter

from serving.api.routes import features, health, predict, refresh

api_router = APIRouter()
api_router.include_router(health.router)
api_router.include_router(features.router)
api_router.include_router(predict.router)
api_router.include_router(refresh.router)
