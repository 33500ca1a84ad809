"""The SMS panel pages, included at /sms/ (namespace ``sms``)."""
from django.contrib.auth import views as auth_views
from django.urls import path
from django.views.generic import RedirectView

from . import views

app_name = "sms"
urlpatterns = [
    path("", RedirectView.as_view(pattern_name="sms:compose", permanent=False), name="home"),
    path("login/", views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(next_page="sms:login"), name="logout"),
    path("compose/", views.compose, name="compose"),
    path("campaigns/", views.campaign_list, name="campaigns"),
    path("inbox/", views.inbox, name="inbox"),
    path("messages/", views.message_list, name="messages"),
]
