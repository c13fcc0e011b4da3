from django.shortcuts import render

from .room_names import ROOM_NAME_RULE, is_valid_room_name


def index(request):
    return render(request, "chat/index.html")


def room(request, room_name):
    # Differs from the official tutorial: a name the channel layer cannot use gets
    # a page that says why, instead of a room whose socket would crash.
    if not is_valid_room_name(room_name):
        context = {"room_name": room_name, "rule": ROOM_NAME_RULE}
        return render(request, "chat/room_name_refused.html", context, status=400)
    return render(request, "chat/room.html", {"room_name": room_name})
