from django.urls import path

from . import views

urlpatterns = [
    path("", views.index, name="index"),
    # Differs from the official tutorial (<str:room_name>): <path:...> lets any
    # name, even one with "/" in it, reach the view, which explains which names can
    # work, instead of Django's "Page not found".
    path("<path:room_name>/", views.room, name="room"),
]
