from asgiref.sync import async_to_sync
from django.conf import settings
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import UserCreationForm
from django.shortcuts import redirect, render

from . import limits
from .room_names import ROOM_NAME_RULE, is_valid_room_name


@login_required
def index(request):
    return render(request, "chat/index.html")


@login_required
def room(request, room_name):
    # Differs from the official tutorial: a name the channel layer cannot use gets
    # a page that says why, instead of a room whose socket would crash.
    if not is_valid_room_name(room_name):
        context = {"room_name": room_name, "rule": ROOM_NAME_RULE}
        return render(request, "chat/room_name_refused.html", context, status=400)
    return render(request, "chat/room.html", {"room_name": room_name})


def signup(request):
    """Create an account with Django's own form, log it in, go to the rooms. At
    most CHAT_MAX_SIGNUPS_PER_HOUR accounts an hour from one address."""
    form = UserCreationForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        address = request.META.get("REMOTE_ADDR", "")
        limit = settings.CHAT_MAX_SIGNUPS_PER_HOUR
        if not async_to_sync(limits.allow)(f"chat:signup:{address}", limit, 3600):
            context = {"form": form, "too_many": True}
            return render(request, "registration/signup.html", context, status=429)
        login(request, form.save())
        return redirect("index")
    return render(request, "registration/signup.html", {"form": form})
