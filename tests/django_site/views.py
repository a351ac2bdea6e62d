"""Plain Django views (sync, async, class-based) and DRF views of the test project."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, JsonResponse
from django.views import View
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from nowramp_auth import Principal, current_principal
from nowramp_auth.django import require_scopes
from nowramp_auth.django.rest_framework import ApiKeyAuthentication, ApiKeyUser, HasScopes


def _payload(principal: Principal | None) -> dict[str, Any]:
    assert principal is not None
    return {
        "key_id": principal.key_id,
        "kind": principal.kind,
        "scopes": sorted(principal.scopes),
        "project_id": principal.project_id,
    }


def health(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


@require_scopes("quotes:read")
def quotes(request: HttpRequest) -> JsonResponse:
    assert request.principal == current_principal()  # type: ignore[attr-defined]
    return JsonResponse({"quotes": [], **_payload(current_principal())})


@require_scopes("orders:write")
async def orders(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"created": True, **_payload(current_principal())}, status=201)


def whoami(request: HttpRequest) -> JsonResponse:
    return JsonResponse(_payload(request.principal))  # type: ignore[attr-defined]


@require_scopes("wallets:read")
class Wallets(View):
    def get(self, request: HttpRequest) -> JsonResponse:
        return JsonResponse({"wallets": [], **_payload(current_principal())})


@require_scopes("wallets:read")
class AsyncWallets(View):
    async def get(self, request: HttpRequest) -> JsonResponse:
        return JsonResponse({"wallets": [], **_payload(current_principal())})


class DrfOrders(APIView):
    authentication_classes = [ApiKeyAuthentication]
    permission_classes = [HasScopes]
    required_scopes = {"GET": ["orders:read"], "POST": ["orders:write"]}

    def get(self, request: Request) -> Response:
        assert isinstance(request.user, ApiKeyUser) and request.user.is_authenticated
        assert isinstance(request.auth, Principal)
        return Response({"orders": [], **_payload(request.auth)})

    def post(self, request: Request) -> Response:
        return Response({"created": True, **_payload(request.auth)}, status=201)

    def delete(self, request: Request) -> Response:  # not in required_scopes: refused
        return Response(status=204)


class DrfQuotes(APIView):
    authentication_classes = [ApiKeyAuthentication]
    permission_classes = [HasScopes]
    required_scopes = ["quotes:read"]

    def get(self, request: Request) -> Response:
        return Response({"quotes": [], **_payload(request.auth)})
