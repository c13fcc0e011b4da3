from django.urls import path

from . import views

urlpatterns = [
    path("", views.index, name="index"),
    # <path:...> so that any name, even one with "/" in it, reaches the view,
    # which explains which names can work.
    path("<path:room_name>/", views.room, name="room"),
]
