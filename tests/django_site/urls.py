"""URLs of the test project: the same paths as the Starlette test app where they overlap."""

from django.urls import path

from . import views

urlpatterns = [
    path("health", views.health),
    path("quotes", views.quotes),
    path("orders", views.orders),
    path("whoami", views.whoami),
    path("wallets", views.Wallets.as_view()),
    path("async-wallets", views.AsyncWallets.as_view()),
    path("drf/orders", views.DrfOrders.as_view()),
    path("drf/quotes", views.DrfQuotes.as_view()),
    path("open/drf/orders", views.DrfOrders.as_view()),
    path("open/drf/quotes", views.DrfQuotes.as_view()),
]
