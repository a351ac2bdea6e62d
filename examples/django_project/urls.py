"""A plain view and a DRF view, protected by the middleware in settings.MIDDLEWARE."""

from django.http import HttpRequest, JsonResponse
from django.urls import path
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from nowramp_auth import Authenticator, KeyManager, MemoryKeyStore
from nowramp_auth.django import require_scopes
from nowramp_auth.django.rest_framework import ApiKeyAuthentication, HasScopes

store = MemoryKeyStore()  # RedisKeyStore.from_url("redis://...") in production
manager = KeyManager(store)
authenticator = Authenticator(store)
print("example key:", manager.create(scopes=["quotes:read", "orders:read"]).secret)


def health(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


@require_scopes("quotes:read")
def quotes(request: HttpRequest) -> JsonResponse:
    principal = request.principal  # type: ignore[attr-defined]
    return JsonResponse({"quotes": [], "key_id": principal.key_id})


class Orders(APIView):
    authentication_classes = [ApiKeyAuthentication]
    permission_classes = [HasScopes]
    required_scopes = {"GET": ["orders:read"], "POST": ["orders:write"]}

    def get(self, request: Request) -> Response:
        return Response({"orders": [], "project_id": request.auth.project_id})


urlpatterns = [path("health", health), path("quotes", quotes), path("orders", Orders.as_view())]
