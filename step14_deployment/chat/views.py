from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import UserCreationForm
from django.shortcuts import redirect, render

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
    """Create an account with Django's own form, log it in, go to the rooms."""
    form = UserCreationForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        login(request, form.save())
        return redirect("index")
    return render(request, "registration/signup.html", {"form": form})
