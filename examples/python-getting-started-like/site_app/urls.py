"""The page says which Python and Django serve it."""

import platform

import django
from django.http import JsonResponse
from django.urls import path


def index(request):
    return JsonResponse({"python": platform.python_version(), "django": django.get_version()})


urlpatterns = [path("", index)]
