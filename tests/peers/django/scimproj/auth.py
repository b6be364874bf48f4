"""Bearer-token authentication: the integrator's part of a django-scim2 server.

django-scim2 only checks `request.user.is_authenticated` (its SCIMAuthCheckMiddleware answers
401 otherwise); deciding who the caller is belongs to the application. This middleware
accepts exactly `Authorization: Bearer <SCIM_PEER_TOKEN>`.
"""
import hmac
import os

from django.contrib.auth.models import AnonymousUser


class ScimClient:
    """The authenticated principal of a request that carried the token (not a database user)."""

    is_authenticated = True
    is_anonymous = False
    is_active = True
    username = "scim-client"
    pk = None

    def __str__(self):
        return self.username


class BearerTokenMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response
        self.expected = ("Bearer " + os.environ["SCIM_PEER_TOKEN"]).encode()

    def __call__(self, request):
        given = request.META.get("HTTP_AUTHORIZATION", "").encode()
        if hmac.compare_digest(given, self.expected):
            request.user = ScimClient()
        else:
            request.user = AnonymousUser()
        return self.get_response(request)
