"""The models of django-scim2's own test suite (tests/models.py there)."""
from django.contrib.auth.models import AbstractUser
from django.db import models

from django_scim import models as scim_models


class Group(scim_models.AbstractSCIMGroupMixin):
    name = models.CharField("name", max_length=80, unique=True)


class User(scim_models.AbstractSCIMUserMixin, AbstractUser):
    scim_groups = models.ManyToManyField(
        Group,
        related_name="user_set",
    )
