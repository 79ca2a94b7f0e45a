from django.urls import path

from djangoproject.notes import views

urlpatterns = [
    path("notes/", views.notes),
    path("async-notes/", views.async_notes),
    path("async-sleep/", views.async_sleep),
    path("state/", views.state),
]
