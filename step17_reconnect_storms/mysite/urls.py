"""
URL configuration for mysite project.

The `urlpatterns` list routes URLs to views. For more information please see:
    https://docs.djangoproject.com/en/5.2/topics/http/urls/
"""

from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from chat.views import signup

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="index")),
    path("chat/", include("chat.urls")),
    # Django's own login, logout and password views: accounts/login/ and so on.
    path("accounts/", include("django.contrib.auth.urls")),
    path("accounts/signup/", signup, name="signup"),
    path("admin/", admin.site.urls),
]
